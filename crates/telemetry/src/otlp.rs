//! The OTLP span exporter the standard environment asks for:
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`;
//! none: no exporter), `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc`, the default, or
//! `http/protobuf`), `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`;
//! the SDK itself reads `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` and
//! the `OTEL_BSP_*` batch settings.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};

const SERVICE_NAME: &str = "conveyor-etl-operator";
/// Deadline of one HTTP export request (the OTLP default).
const HTTP_EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// While the collector keeps failing, at most one warning per this interval.
const WARNING_INTERVAL: Duration = Duration::from_secs(300);

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|value| !value.trim().is_empty())
}

/// The tracer provider the environment configures, `None` without an endpoint.
pub(super) fn provider_from_env() -> anyhow::Result<Option<SdkTracerProvider>> {
    if env("OTEL_EXPORTER_OTLP_ENDPOINT").is_none() && env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none() {
        return Ok(None);
    }
    let protocol = env("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL").or_else(|| env("OTEL_EXPORTER_OTLP_PROTOCOL"));
    let builder = opentelemetry_otlp::SpanExporter::builder();
    let exporter = match protocol.as_deref().unwrap_or("grpc") {
        "grpc" => builder.with_tonic().build()?,
        "http/protobuf" => builder
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_http_client(OnTokio::new(https_client())?)
            .build()?,
        other => anyhow::bail!(
            "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported; use \"grpc\" or \"http/protobuf\""
        ),
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(WarnSparingly::new(exporter))
        .with_resource(resource())
        .build();
    Ok(Some(provider))
}

/// The SDK's resource from the environment, named `conveyor-etl-operator`
/// unless `OTEL_SERVICE_NAME` or `service.name` in `OTEL_RESOURCE_ATTRIBUTES` names it.
fn resource() -> Resource {
    let named = env("OTEL_SERVICE_NAME").is_some()
        || env("OTEL_RESOURCE_ATTRIBUTES")
            .is_some_and(|attributes| attributes.split(',').any(|kv| kv.trim().starts_with("service.name=")));
    let builder = Resource::builder();
    if named { builder.build() } else { builder.with_service_name(SERVICE_NAME).build() }
}

type HttpsClient = opentelemetry_http::hyper::HyperClient<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
>;

/// hyper over rustls (ring): `http://` and `https://` collectors, no OpenSSL.
fn https_client() -> HttpsClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let connector = match hyper_rustls::HttpsConnectorBuilder::new().with_native_roots() {
        Ok(builder) => builder,
        // No system certificates (a minimal image): plain-HTTP collectors still work.
        Err(_) => hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth(),
        ),
    }
    .https_or_http()
    .enable_http1()
    .build();
    opentelemetry_http::hyper::HyperClient::new(connector, HTTP_EXPORT_TIMEOUT, None)
}

/// Runs each request on the Tokio runtime: the batch processor exports from
/// its own thread, where hyper would find no runtime.
#[derive(Debug, Clone)]
struct OnTokio<C> {
    client: C,
    runtime: tokio::runtime::Handle,
}

impl<C> OnTokio<C> {
    fn new(client: C) -> anyhow::Result<OnTokio<C>> {
        Ok(OnTokio { client, runtime: tokio::runtime::Handle::try_current()? })
    }
}

#[async_trait::async_trait]
impl<C: HttpClient + Clone + 'static> HttpClient for OnTokio<C> {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        self.runtime.spawn(async move { client.send_bytes(request).await }).await?
    }
}

/// An exporter that reports a failing collector with one warning when it
/// starts failing (again at most every [`WARNING_INTERVAL`] while it keeps
/// failing) and one line when it recovers, never one per batch.
#[derive(Debug)]
struct WarnSparingly<E> {
    inner: E,
    /// When the last warning was logged; `None` while exports succeed.
    warned: Mutex<Option<Instant>>,
}

impl<E> WarnSparingly<E> {
    fn new(inner: E) -> WarnSparingly<E> {
        WarnSparingly { inner, warned: Mutex::new(None) }
    }

    fn record(&self, result: &OTelSdkResult) {
        let mut warned = self.warned.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        match result {
            Err(error) if warned.is_none_or(|at| at.elapsed() >= WARNING_INTERVAL) => {
                tracing::warn!(%error, "cannot export spans to the OTLP collector; reconciles go on, spans are dropped");
                *warned = Some(Instant::now());
            }
            Err(_) => {}
            Ok(()) => {
                if warned.take().is_some() {
                    tracing::info!("exporting spans to the OTLP collector again");
                }
            }
        }
    }
}

impl<E: SpanExporter> SpanExporter for WarnSparingly<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let result = self.inner.export(batch).await;
        self.record(&result);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}
