//! An import's sessions on a running service: each pass is one
//! `FleetService/ImportFleet` stream, its chunks sent as they are read and
//! answered in turn.

use async_trait::async_trait;
use tokio::sync::mpsc;
use tonic::Streaming;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

use super::session::{Session, Sessions, field_name};
use super::{Change, ImportError, Refusal, RowOutcome, RowVerdict};
use crate::domain::{FleetCommand, FleetRequest};
use crate::proto::v1::fleet_service_client::FleetServiceClient;
use crate::proto::v1::import_fleet_request::Step;
use crate::proto::v1::import_fleet_response::Answer;
use crate::proto::v1::import_row::Entity;
use crate::proto::v1::{self, ImportFleetRequest, ImportFleetResponse};
use crate::storage::FleetPass;

/// How a caller proves who it is to the service.
#[derive(Debug, Clone, Default)]
pub enum Credential {
    #[default]
    None,
    ApiKey(String),
    Bearer(String),
}

/// The sessions of the service at the other end of `channel`.
pub struct RemoteSessions {
    channel: Channel,
    credential: Credential,
}

impl RemoteSessions {
    pub fn new(channel: Channel, credential: Credential) -> Self {
        Self {
            channel,
            credential,
        }
    }
}

#[async_trait]
impl Sessions for RemoteSessions {
    async fn open(&self, pass: FleetPass) -> Result<Box<dyn Session>, ImportError> {
        let (sender, outgoing) = mpsc::channel(1);
        let start = match pass {
            FleetPass::Check => v1::ImportPass::Check,
            FleetPass::Apply => v1::ImportPass::Apply,
        };
        sender
            .send(ImportFleetRequest {
                step: Some(Step::Start(start.into())),
            })
            .await
            .map_err(|_| gone())?;
        let mut request =
            tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(outgoing));
        let header = match &self.credential {
            Credential::None => None,
            Credential::ApiKey(key) => Some(("x-api-key", key.clone())),
            Credential::Bearer(token) => Some(("authorization", format!("Bearer {token}"))),
        };
        if let Some((name, value)) = header {
            let value = MetadataValue::try_from(value).map_err(|_| {
                ImportError::Server(format!("the credential for {name} is not a valid header"))
            })?;
            request.metadata_mut().insert(name, value);
        }
        let answers = FleetServiceClient::new(self.channel.clone())
            .import_fleet(request)
            .await
            .map_err(refused)?
            .into_inner();
        Ok(Box::new(RemoteSession { sender, answers }))
    }
}

struct RemoteSession {
    sender: mpsc::Sender<ImportFleetRequest>,
    answers: Streaming<ImportFleetResponse>,
}

impl RemoteSession {
    async fn exchange(&mut self, step: Step) -> Result<Answer, ImportError> {
        // A send that fails means the service ended the stream: its answer
        // says why.
        let _ = self
            .sender
            .send(ImportFleetRequest { step: Some(step) })
            .await;
        match self.answers.message().await.map_err(refused)? {
            Some(ImportFleetResponse {
                answer: Some(Answer::Refused(refusal)),
            }) => Err(ImportError::Raced(refusal_of(refusal))),
            Some(ImportFleetResponse {
                answer: Some(answer),
            }) => Ok(answer),
            _ => Err(gone()),
        }
    }
}

#[async_trait]
impl Session for RemoteSession {
    async fn run(&mut self, chunk: Vec<FleetRequest>) -> Result<Vec<RowVerdict>, ImportError> {
        let sent = chunk.len();
        let rows = chunk.into_iter().map(|r| row_of(r.command)).collect();
        let Answer::Verdicts(verdicts) = self.exchange(Step::Rows(v1::ImportRows { rows })).await?
        else {
            return Err(unexpected());
        };
        if verdicts.verdicts.len() != sent {
            return Err(unexpected());
        }
        verdicts
            .verdicts
            .into_iter()
            .map(|verdict| match verdict.verdict {
                Some(v1::import_verdict::Verdict::Change(change)) => Ok(Ok(RowOutcome {
                    changed: change.changed,
                    change: if !change.changed {
                        Change::Unchanged
                    } else if change.created {
                        Change::Create
                    } else {
                        Change::Update(change.fields.iter().filter_map(|f| field_name(f)).collect())
                    },
                    redriven: change.bookings_redriven as usize,
                })),
                Some(v1::import_verdict::Verdict::Refusal(refusal)) => Ok(Err(refusal_of(refusal))),
                None => Err(unexpected()),
            })
            .collect()
    }

    async fn finish(mut self: Box<Self>) -> Result<(), ImportError> {
        match self.exchange(Step::Finish(v1::ImportFinish {})).await? {
            Answer::Finished(_) => Ok(()),
            _ => Err(unexpected()),
        }
    }
}

/// A row as the service takes it: the fields of a checked command.
fn row_of(command: FleetCommand) -> v1::ImportRow {
    let entity = match command {
        FleetCommand::PutEmployee { employee: e, .. } => Entity::Employee(v1::ImportEmployee {
            id: e.id,
            name: e.name,
            email: e.email,
            department: e.department,
        }),
        FleetCommand::PutDriver { driver: d, .. } => Entity::Driver(v1::ImportDriver {
            id: d.id,
            name: d.name,
            phone: d.phone,
            license_number: d.license_number,
        }),
        FleetCommand::PutVehicle {
            vehicle: v,
            driver_id,
            ..
        } => Entity::Vehicle(v1::ImportVehicle {
            id: v.id,
            registration: v.registration,
            make: v.make,
            model: v.model,
            seats: v.seats.into(),
            driver_id,
        }),
        // An import makes only the three.
        _ => return v1::ImportRow { entity: None },
    };
    v1::ImportRow {
        entity: Some(entity),
    }
}

fn refusal_of(refusal: v1::ImportRowRefusal) -> Refusal {
    Refusal {
        reason: refusal.reason,
        column: refusal.field,
        message: refusal.message,
        missing_driver: Some(refusal.missing_driver_id).filter(|id| !id.is_empty()),
    }
}

fn refused(status: tonic::Status) -> ImportError {
    ImportError::Server(format!(
        "the service refused the import: {} ({:?}); nothing was written",
        status.message(),
        status.code()
    ))
}

fn gone() -> ImportError {
    ImportError::Server("the service ended the import early; nothing was written".into())
}

fn unexpected() -> ImportError {
    ImportError::Server("the service answered out of turn; nothing was written".into())
}
