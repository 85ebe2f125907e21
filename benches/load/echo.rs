//! The ceiling: a bare tonic unary echo server, run as a process of its own
//! like the service, so both are measured through the same client and
//! transport.

use std::net::SocketAddr;

use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status};

pub mod proto {
    tonic::include_proto!("bench.v1");
}

use proto::EchoMessage;
use proto::echo_server::{Echo, EchoServer};

struct Echoer;

#[tonic::async_trait]
impl Echo for Echoer {
    async fn echo(&self, request: Request<EchoMessage>) -> Result<Response<EchoMessage>, Status> {
        Ok(Response::new(request.into_inner()))
    }
}

/// Serves the echo on `addr` until killed, printing the bound address.
pub fn serve(addr: SocketAddr) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await.expect("bind");
        println!("listening on {}", listener.local_addr().expect("address"));
        tonic::transport::Server::builder()
            .add_service(EchoServer::new(Echoer))
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .expect("serve");
    });
}
