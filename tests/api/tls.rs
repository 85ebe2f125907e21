//! TLS on both listeners, client certificates (mTLS), and TLS towards the
//! upstream in gateway-only mode. Certificates come from a test CA made at
//! test time.

use std::time::Duration;

use serde_json::Value;
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use vehicle_allocation::app::Application;
use vehicle_allocation::auth::AuthSettings;
use vehicle_allocation::gateway::UpstreamTls;
use vehicle_allocation::proto::v1::fleet_service_client::FleetServiceClient;
use vehicle_allocation::proto::v1::{self, CreateAllocationRequest, ListVehiclesRequest};
use vehicle_allocation::tls::TlsSettings;

use crate::helpers::{AppOptions, TestApp, assert_status, spawn_app_with};
use crate::identity::{Issued, TestPki};

fn tls_settings(server: &Issued, client_ca: Option<&TestPki>, on_http: bool) -> TlsSettings {
    TlsSettings {
        cert_file: server.cert_file.clone(),
        key_file: server.key_file.clone(),
        client_ca_file: client_ca.map(TestPki::ca_file),
        client_auth_http: on_http,
    }
}

/// A gRPC channel to `app` trusting `pki`, presenting `client` if given.
async fn channel(
    app: &TestApp,
    pki: &TestPki,
    client: Option<&Issued>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");
    if let Some(client) = client {
        tls = tls.identity(Identity::from_pem(&client.cert_pem, &client.key_pem));
    }
    Channel::from_shared(format!("https://{}", app.channel_addr()))
        .unwrap()
        .tls_config(tls)?
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// A REST client trusting `pki`, presenting `client` if given.
fn https_client(pki: &TestPki, client: Option<&Issued>) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap()]);
    if let Some(client) = client {
        let pem = format!("{}{}", client.cert_pem, client.key_pem);
        builder = builder.identity(reqwest::Identity::from_pem(pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// An app that requires client certificates from `pki` (on REST too when
/// `on_http`), whose key file holds `keys` (TOML), and whose own clients
/// present `client`.
async fn mtls_app(pki: &TestPki, keys: &str, client: &Issued, on_http: bool) -> TestApp {
    let server = pki.server("server");
    let path = pki.dir.path().join("keys.toml");
    std::fs::write(&path, keys).unwrap();
    spawn_app_with(AppOptions {
        auth: AuthSettings {
            api_keys_file: Some(path),
            ..AuthSettings::default()
        },
        tls: Some(tls_settings(&server, Some(pki), on_http)),
        client_tls: Some((
            pki.ca_pem.clone(),
            Some((client.cert_pem.clone(), client.key_pem.clone())),
        )),
        ..AppOptions::default()
    })
    .await
}

#[tokio::test]
async fn both_listeners_serve_tls_to_clients_that_trust_the_ca_and_refuse_plaintext() {
    let pki = TestPki::new();
    let server = pki.server("server");
    let app = spawn_app_with(AppOptions {
        tls: Some(tls_settings(&server, None, false)),
        client_tls: Some((pki.ca_pem.clone(), None)),
        ..AppOptions::default()
    })
    .await;
    // The app's own clients speak TLS: gRPC and REST both answer.
    let vehicles = app
        .fleet
        .clone()
        .list_vehicles(ListVehiclesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert!(!vehicles.vehicles.is_empty());
    assert!(app.http_base.starts_with("https://"));
    let response = app.http.get(app.url("/api/vehicles")).send().await.unwrap();
    assert_eq!(response.status(), 200);

    // Plaintext gRPC to the TLS port gets no answer.
    let plain = Channel::from_shared(format!("http://{}", app.channel_addr()))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect_lazy();
    let status = FleetServiceClient::new(plain)
        .list_vehicles(ListVehiclesRequest::default())
        .await
        .unwrap_err();
    assert_ne!(status.code(), Code::Ok);
    // Nor does plain HTTP to the REST port.
    let http_url = app.url("/api/vehicles").replacen("https://", "http://", 1);
    assert!(reqwest::Client::new().get(http_url).send().await.is_err());
    // A client that does not trust the CA refuses the server.
    let untrusting = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(TestPki::new().ca_pem.as_bytes()).unwrap()])
        .build()
        .unwrap();
    assert!(untrusting.get(app.url("/healthz")).send().await.is_err());
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_and_its_name_is_the_caller() {
    let pki = TestPki::new();
    let gate = pki.client("gate-1.clients.test");
    let stranger = pki.client("stranger.clients.test");
    let keys = "[[client_cert]]\nname = \"gate-1.clients.test\"\nroles = [\"booking_agent\"]\n";
    let app = mtls_app(&pki, keys, &gate, false).await;
    // The gate's certificate makes it a booking agent: it books for anyone.
    let booked = app
        .allocations
        .clone()
        .create_allocation(CreateAllocationRequest {
            allocation: Some(v1::Allocation {
                employee_id: app.employee(3),
                vehicle_id: app.vehicle(3),
                allocation_date: app.day(1),
                ..Default::default()
            }),
            request_id: String::new(),
        })
        .await;
    assert!(booked.is_ok(), "{booked:?}");

    // A certificate of the same CA that the key file does not list is
    // authenticated but may do nothing.
    let status = FleetServiceClient::new(channel(&app, &pki, Some(&stranger)).await.unwrap())
        .list_vehicles(ListVehiclesRequest::default())
        .await
        .unwrap_err();
    assert_status(&status, Code::PermissionDenied, "ROLE_REQUIRED");

    // Without a certificate the handshake fails.
    let refused = match channel(&app, &pki, None).await {
        Err(_) => true,
        Ok(channel) => FleetServiceClient::new(channel)
            .list_vehicles(ListVehiclesRequest::default())
            .await
            .is_err(),
    };
    assert!(refused, "a gRPC client without a certificate was served");

    // REST does not ask for certificates unless TLS_CLIENT_AUTH_HTTP: an
    // anonymous REST caller is then just unauthenticated.
    let response = https_client(&pki, None)
        .get(app.url("/api/vehicles"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["reason"], "CREDENTIALS_MISSING");
}

#[tokio::test]
async fn with_client_auth_on_rest_the_certificate_authenticates_rest_callers_too() {
    let pki = TestPki::new();
    let auditor = pki.client("audit.clients.test");
    let keys = "[[client_cert]]\nname = \"audit.clients.test\"\nroles = [\"auditor\"]\n";
    let app = mtls_app(&pki, keys, &auditor, true).await;
    let response = app.http.get(app.url("/api/vehicles")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["vehicles"][0]["driver"]["license_number"].is_string(),
        "an auditor sees licence numbers: {body}"
    );
    // An auditor may not book.
    let response = app
        .http
        .post(app.url("/api/allocations"))
        .json(
            &serde_json::json!({"employee_id": app.employee(1), "vehicle_id": app.vehicle(1),
                                  "allocation_date": app.day(1)}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    // Without a certificate the REST handshake fails.
    assert!(
        https_client(&pki, None)
            .get(app.url("/healthz"))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn gateway_only_mode_talks_tls_to_its_upstream_with_a_client_certificate() {
    let pki = TestPki::new();
    let gateway_cert = pki.client("gateway.clients.test");
    let keys = format!(
        "[[client_cert]]\nname = \"gateway.clients.test\"\nroles = [\"fleet_admin\"]\n\n{}",
        crate::identity::key_entry("audit-export", "audit-key", &["auditor"])
    );
    let backend = mtls_app(&pki, &keys, &gateway_cert, false).await;
    let dir = tempfile::tempdir().unwrap();
    let mut settings = crate::helpers::plain_settings(dir.path());
    settings.grpc_upstream = Some(format!(
        "https://localhost:{}",
        backend.channel_addr().port()
    ));
    settings.upstream_tls = UpstreamTls {
        ca_file: Some(pki.ca_file()),
        identity: Some((
            gateway_cert.cert_file.clone(),
            gateway_cert.key_file.clone(),
        )),
    };
    let gateway = Application::build(settings).await.unwrap();
    let base = format!("http://{}", gateway.http_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server_task = tokio::spawn(gateway.run_until(async {
        let _ = stopped.await;
    }));
    // The gateway's certificate opens the connection but speaks for no
    // REST caller: without credentials of their own they are refused, not
    // served as the gateway (a fleet_admin here).
    let response = reqwest::Client::new()
        .get(format!("{base}/api/vehicles"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["reason"], "CREDENTIALS_MISSING", "{body}");
    // With their own key they are who the key says.
    let response = reqwest::Client::new()
        .get(format!("{base}/api/vehicles"))
        .header("x-api-key", "audit-key")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["vehicles"][0]["driver"]["license_number"].is_string(),
        "an auditor sees licence numbers: {body}"
    );
    let response = reqwest::Client::new()
        .post(format!("{base}/api/allocations"))
        .header("x-api-key", "audit-key")
        .json(&serde_json::json!({"employee_id": backend.employee(1),
            "vehicle_id": backend.vehicle(1), "allocation_date": backend.day(1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        403,
        "an auditor, not the gateway's fleet_admin"
    );
    let _ = stop.send(());
    server_task.await.unwrap().unwrap();
}
