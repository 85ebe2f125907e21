//! What a hostile or careless caller meets: values echoed short, codec
//! errors blamed on the caller, and the server's limits.

use prost::Message as _;
use tonic::Code;
use vehicle_allocation::proto::v1::{self, CreateAllocationRequest, UpdateAllocationRequest};

use crate::helpers::{assert_status, spawn_app};

#[tokio::test]
async fn values_echoed_in_errors_are_cut_to_64_characters() {
    let app = spawn_app().await;
    let date = "9".repeat(5000);
    let status = app
        .create(v1::Allocation {
            employee_id: app.employee(0),
            vehicle_id: app.vehicle(0),
            allocation_date: date.clone(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_status(&status, Code::InvalidArgument, "INVALID_DATE");
    assert!(
        status.message().contains(&format!("\"{}…\"", "9".repeat(64))),
        "{}",
        status.message()
    );
    assert!(status.message().len() < 300, "{}", status.message());

    let created = app.book(0, 0, 1).await.unwrap();
    let path = "p".repeat(5000);
    let status = app
        .allocations
        .clone()
        .update_allocation(UpdateAllocationRequest {
            allocation: Some(v1::Allocation {
                id: created.id.clone(),
                etag: "7".repeat(5000),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec![path.clone()],
            }),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().len() < 600, "{}", status.message());
    assert!(status.message().contains('…'), "{}", status.message());

    let response = app.get(&format!("/api/{}", "x".repeat(5000))).await;
    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.len() < 200 && message.contains('…'), "{message}");
}

/// Sends `body` as the request message of `path`, as it is on the wire.
async fn raw_call(app: &crate::helpers::TestApp, path: &'static str, body: Vec<u8>) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(app.channel.clone());
    grpc.ready().await.unwrap();
    grpc.unary::<_, Vec<u8>, _>(
        tonic::Request::new(body),
        http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .unwrap_err()
}

#[tokio::test]
async fn a_message_that_does_not_decode_is_the_callers_fault() {
    let app = spawn_app().await;
    // Field 1 (allocation) holding field 2 (employee_id) as bytes that are
    // not UTF-8.
    let inner = [0x12, 0x02, 0xff, 0xfe];
    let mut body = vec![0x0a, inner.len() as u8];
    body.extend(inner);
    let status = raw_call(
        &app,
        "/vehicle_allocation.v1.AllocationService/CreateAllocation",
        body,
    )
    .await;
    assert_status(&status, Code::InvalidArgument, "MALFORMED_REQUEST");

    // Not protobuf at all.
    let status = raw_call(
        &app,
        "/vehicle_allocation.v1.AllocationService/GetAllocation",
        vec![0xff; 7],
    )
    .await;
    assert_status(&status, Code::InvalidArgument, "MALFORMED_REQUEST");
}

#[tokio::test]
async fn a_message_over_the_size_limit_is_resource_exhausted() {
    let app = spawn_app().await;
    let request = CreateAllocationRequest {
        allocation: Some(v1::Allocation {
            purpose: "x".repeat(5 << 20),
            ..Default::default()
        }),
        request_id: String::new(),
    };
    assert!(request.encoded_len() > 4 << 20);
    let status = app
        .allocations
        .clone()
        .create_allocation(request)
        .await
        .unwrap_err();
    assert_status(&status, Code::ResourceExhausted, "MESSAGE_TOO_LARGE");
}

/// Bytes in, bytes out: for requests the generated clients cannot send.
#[derive(Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut as _;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf as _;
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}
