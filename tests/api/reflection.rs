//! Server reflection, so grpcurl and friends work without the proto files.

use prost::Message;
use tokio_stream::StreamExt;
use tonic_reflection::pb::{v1, v1alpha};

use crate::helpers::spawn_app;

const SERVICES: [&str; 2] = [
    "vehicle_allocation.v1.AllocationService",
    "vehicle_allocation.v1.FleetService",
];

#[tokio::test]
async fn v1_lists_both_services_and_resolves_their_files_with_imports() {
    let app = spawn_app().await;
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let ask = |request| v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(request),
    };
    let requests = tokio_stream::iter(vec![
        ask(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
        ask(
            v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                "vehicle_allocation.v1.AllocationService".into(),
            ),
        ),
        ask(
            v1::server_reflection_request::MessageRequest::FileByFilename(
                "google/protobuf/field_mask.proto".into(),
            ),
        ),
        ask(
            v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                "google.rpc.BadRequest".into(),
            ),
        ),
    ]);
    let mut responses = client
        .server_reflection_info(requests)
        .await
        .unwrap()
        .into_inner();

    use v1::server_reflection_response::MessageResponse;
    let Some(MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for service in SERVICES.iter().chain(&["grpc.health.v1.Health"]) {
        assert!(names.contains(service), "{service} missing from {names:?}");
    }

    // The imports can be fetched by name, so clients can resolve every type.
    for (symbol_file, wanted) in [
        (
            "vehicle_allocation/v1/allocation.proto",
            "google/protobuf/timestamp.proto",
        ),
        (
            "google/protobuf/field_mask.proto",
            "google/protobuf/field_mask.proto",
        ),
        ("google.rpc", "BadRequest"),
    ] {
        let Some(MessageResponse::FileDescriptorResponse(files)) =
            responses.next().await.unwrap().unwrap().message_response
        else {
            panic!("expected file descriptors for {symbol_file}");
        };
        let files: Vec<_> = files
            .file_descriptor_proto
            .iter()
            .map(|bytes| prost_types::FileDescriptorProto::decode(bytes.as_slice()).unwrap())
            .collect();
        let found = files.iter().any(|f| {
            f.name() == symbol_file
                || f.name() == wanted
                || (f.package() == symbol_file && f.message_type.iter().any(|m| m.name() == wanted))
        });
        assert!(
            found,
            "{symbol_file}/{wanted} not in {:?}",
            files.iter().map(|f| f.name()).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn v1alpha_lists_both_services() {
    let app = spawn_app().await;
    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        responses.next().await.unwrap().unwrap().message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<_> = list.service.iter().map(|s| s.name.as_str()).collect();
    for service in SERVICES {
        assert!(names.contains(&service), "{service} missing from {names:?}");
    }
}

/// The services reflection v1 lists, or the status of the call.
pub async fn try_list_services(
    app: &crate::helpers::TestApp,
) -> Result<Vec<String>, tonic::Status> {
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(app.channel.clone());
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await?
        .into_inner();
    use v1::server_reflection_response::MessageResponse;
    match responses.next().await {
        Some(Ok(answer)) => match answer.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                Ok(list.service.into_iter().map(|s| s.name).collect())
            }
            other => panic!("expected a service list, got {other:?}"),
        },
        Some(Err(status)) => Err(status),
        None => Err(tonic::Status::unknown("no answer")),
    }
}

pub async fn list_services(app: &crate::helpers::TestApp) -> Vec<String> {
    try_list_services(app).await.unwrap()
}
