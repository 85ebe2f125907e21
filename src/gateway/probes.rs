//! `/healthz` and `/readyz`, for load balancers and orchestrators.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;

use serde::Serialize;
use utoipa::ToSchema;

use super::Upstream;

/// The services whose health decides readiness.
const SERVICES: [&str; 2] = [
    "vehicle_allocation.v1.AllocationService",
    "vehicle_allocation.v1.FleetService",
];

/// The process is up (it answers at all).
#[utoipa::path(
    get, path = "/healthz", tag = "probes", operation_id = "liveness",
    responses((status = 200, description = "Up.", body = LivenessJson))
)]
pub async fn healthz() -> Json<LivenessJson> {
    Json(LivenessJson {
        status: "ok".into(),
    })
}

/// Both gRPC services report SERVING (their store is reachable, and the
/// service is not shutting down).
#[utoipa::path(
    get, path = "/readyz", tag = "probes", operation_id = "readiness",
    responses(
        (status = 200, description = "Ready.", body = ReadinessJson),
        (status = 503, description = "Not ready: a service is NOT_SERVING or cannot be reached.", body = ReadinessJson),
    )
)]
pub async fn readyz(State(upstream): State<Upstream>) -> (StatusCode, Json<ReadinessJson>) {
    let mut services = BTreeMap::new();
    let mut ready = true;
    for service in SERVICES {
        let status = upstream
            .health
            .clone()
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .map(|response| response.into_inner().status());
        let name = match status {
            Ok(ServingStatus::Serving) => "SERVING",
            Ok(other) => {
                ready = false;
                other.as_str_name()
            }
            Err(status) if status.code() == tonic::Code::NotFound => {
                ready = false;
                "SERVICE_UNKNOWN"
            }
            Err(_) => {
                ready = false;
                "UNREACHABLE"
            }
        };
        services.insert(service.to_owned(), name.to_owned());
    }
    let (code, status) = if ready {
        (StatusCode::OK, "SERVING")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "NOT_SERVING")
    };
    (
        code,
        Json(ReadinessJson {
            status: status.into(),
            services,
        }),
    )
}

/// The process is up.
#[derive(Debug, Serialize, ToSchema)]
pub struct LivenessJson {
    #[schema(example = "ok")]
    pub status: String,
}

/// Whether both gRPC services can serve.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"status": "SERVING", "services": {
    "vehicle_allocation.v1.AllocationService": "SERVING",
    "vehicle_allocation.v1.FleetService": "SERVING"}}))]
pub struct ReadinessJson {
    /// `SERVING` when every service is.
    pub status: String,
    /// Each service's gRPC health status.
    pub services: BTreeMap<String, String>,
}
