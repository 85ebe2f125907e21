//! Where an import's rows are decided: a store opened here, or a running
//! service's store through `FleetService/ImportFleet`. Either way the same
//! check-then-apply sessions decide them; only what the import needs of an
//! answer crosses between the two.

use async_trait::async_trait;

use super::{Change, ImportError};
use crate::domain::error::Resource;
use crate::domain::{DomainError, FleetOutcome, FleetRequest};
use crate::storage::{FleetPass, FleetSession, Store, StoreError};

/// What a row does, as the import reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowOutcome {
    /// Whether anything is written.
    pub changed: bool,
    pub change: Change,
    /// Bookings from today on that now carry the vehicle's new driver.
    pub redriven: usize,
}

impl RowOutcome {
    pub fn of(outcome: &FleetOutcome) -> Self {
        Self {
            changed: outcome.changed,
            change: super::change_of(outcome),
            redriven: outcome.redriven.len(),
        }
    }
}

/// Why a row is refused, as the import reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// A reason of the API's catalogue.
    pub reason: String,
    /// The column it is about, if one.
    pub column: String,
    pub message: String,
    /// The driver a vehicle names, when it is not found.
    pub missing_driver: Option<String>,
}

impl Refusal {
    pub fn of(error: &DomainError) -> Self {
        Self {
            reason: error.reason().to_owned(),
            column: super::column_of(error),
            message: error.to_string(),
            missing_driver: match error {
                DomainError::NotFound {
                    resource: Resource::Driver,
                    id,
                } => Some(id.clone()),
                _ => None,
            },
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// A row's verdict.
pub type RowVerdict = Result<RowOutcome, Refusal>;

/// Opens the sessions of an import.
#[async_trait]
pub trait Sessions: Sync {
    async fn open(&self, pass: FleetPass) -> Result<Box<dyn Session>, ImportError>;
}

/// One transaction of rows (see [`FleetSession`]); dropped unfinished, it
/// writes nothing.
#[async_trait]
pub trait Session: Send {
    /// Decides `chunk` after the chunks before it, a verdict per request.
    async fn run(&mut self, chunk: Vec<FleetRequest>) -> Result<Vec<RowVerdict>, ImportError>;

    /// Rolls a check back; commits an apply.
    async fn finish(self: Box<Self>) -> Result<(), ImportError>;
}

/// The sessions of a store opened by this process.
pub struct StoreSessions<'a>(pub &'a dyn Store);

#[async_trait]
impl Sessions for StoreSessions<'_> {
    async fn open(&self, pass: FleetPass) -> Result<Box<dyn Session>, ImportError> {
        let inner = self.0.fleet_session(pass).await.map_err(store_error)?;
        Ok(Box::new(StoreSession(inner)))
    }
}

struct StoreSession(Box<dyn FleetSession>);

#[async_trait]
impl Session for StoreSession {
    async fn run(&mut self, chunk: Vec<FleetRequest>) -> Result<Vec<RowVerdict>, ImportError> {
        let verdicts = self.0.run(chunk).await.map_err(store_error)?;
        Ok(verdicts
            .iter()
            .map(|verdict| match verdict {
                Ok(outcome) => Ok(RowOutcome::of(outcome)),
                Err(refusal) => Err(Refusal::of(refusal)),
            })
            .collect())
    }

    async fn finish(self: Box<Self>) -> Result<(), ImportError> {
        self.0.finish().await.map_err(store_error)
    }
}

/// A refusal of the apply pass means the store changed since the check.
pub fn store_error(error: StoreError) -> ImportError {
    match error {
        StoreError::Rejected(refusal) => ImportError::Raced(Refusal::of(&refusal)),
        other => ImportError::Store(other),
    }
}

/// The `&'static` name of a changed field sent by a service (unknown ones
/// are left out).
pub fn field_name(name: &str) -> Option<&'static str> {
    const FIELDS: &[&str] = &[
        "active",
        "department",
        "driver_id",
        "email",
        "end_date",
        "license_number",
        "make",
        "model",
        "name",
        "phone",
        "reason",
        "registration",
        "retired",
        "seats",
        "start_date",
    ];
    FIELDS.iter().copied().find(|field| *field == name)
}
