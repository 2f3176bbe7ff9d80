//! What every VU of one worker thread shares: the metric recorder and the connection
//! pools. Single-threaded (the worker's own runtime), so nothing here takes a lock.

use std::cell::RefCell;
use std::collections::HashMap;

use barrage_common::metrics::{MetricDef, Recorder, SeriesId, Tags};

use crate::allow::AllowList;
use crate::grpc::{GrpcClient, GrpcError, GrpcTls};
use crate::http::{HttpClient, HttpClientOptions, HttpError};

/// Shared by every VU of one worker thread.
pub struct Worker {
    /// This worker's metric recorder (single-threaded: no lock).
    pub recorder: RefCell<Recorder>,
    /// HTTP connection pool.
    pub http: HttpClient,
    grpc: RefCell<HashMap<GrpcClientKey, GrpcClient>>,
    /// What every connection of these pools may go to.
    allow: AllowList,
}

/// What makes two gRPC steps share a client: the same address, connection count and
/// every TLS setting (a step with another CA, domain or skip-verify needs its own).
#[derive(PartialEq, Eq, Hash)]
struct GrpcClientKey {
    addr: String,
    tls: Option<TlsKey>,
    connections: usize,
}

#[derive(PartialEq, Eq, Hash)]
struct TlsKey {
    ca_pem: Option<Vec<u8>>,
    insecure_skip_verify: bool,
    domain: Option<String>,
    client_cert_pem: Option<Vec<u8>>,
    client_key_pem: Option<Vec<u8>>,
}

impl Worker {
    /// A worker with an empty recorder and fresh connection pools, whose every dial
    /// (HTTP connections, redirect hops, gRPC connections) is checked against `allow`.
    ///
    /// Fails if the HTTP client cannot be built (bad TLS settings).
    pub fn new(insecure_skip_tls_verify: bool, allow: AllowList) -> Result<Self, HttpError> {
        Self::with_http(
            &barrage_common::scenario::HttpSettings {
                insecure_skip_tls_verify,
                ..Default::default()
            },
            allow,
        )
    }

    /// A worker as [`Worker::new`] makes one, its HTTP client set up by a test's HTTP
    /// settings (TLS verification, `--http-debug`).
    ///
    /// Fails if the HTTP client cannot be built (bad TLS settings).
    pub fn with_http(
        settings: &barrage_common::scenario::HttpSettings,
        allow: AllowList,
    ) -> Result<Self, HttpError> {
        let http = HttpClient::new(&HttpClientOptions {
            insecure_skip_verify: settings.insecure_skip_tls_verify,
            allow: allow.clone(),
            debug: settings.debug,
            ..Default::default()
        })?;
        Ok(Worker {
            recorder: RefCell::new(Recorder::new()),
            http,
            grpc: RefCell::new(HashMap::new()),
            allow,
        })
    }

    /// Interns a series in the recorder.
    pub fn series(&self, def: &MetricDef, tags: &Tags) -> SeriesId {
        self.recorder.borrow_mut().series(def, tags)
    }

    /// Records one sample.
    pub fn add(&self, id: SeriesId, v: f64) {
        self.recorder.borrow_mut().add(id, v);
    }

    /// The worker's client for `addr` with these TLS settings and connections, made on
    /// first use.
    ///
    /// Fails if the address or the TLS settings are invalid.
    pub fn grpc_client(
        &self,
        addr: &str,
        tls: Option<&GrpcTls>,
        connections: usize,
    ) -> Result<GrpcClient, GrpcError> {
        let key = GrpcClientKey {
            addr: addr.to_string(),
            tls: tls.map(|t| TlsKey {
                ca_pem: t.ca_pem.clone(),
                insecure_skip_verify: t.insecure_skip_verify,
                domain: t.domain.clone(),
                client_cert_pem: t.client_cert_pem.clone(),
                client_key_pem: t.client_key_pem.clone(),
            }),
            connections,
        };
        if let Some(c) = self.grpc.borrow().get(&key) {
            return Ok(c.clone());
        }
        let c = GrpcClient::with_allow(addr, tls, connections, self.allow.clone())?;
        self.grpc.borrow_mut().insert(key, c.clone());
        Ok(c)
    }
}
