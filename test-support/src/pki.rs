//! A test PKI generated afresh with rcgen: nothing is read from or written to disk.

/// A CA and the certificates it signed, all as PEM text.
///
/// The server leaf names `localhost` and `127.0.0.1`, so a client may verify it by
/// either; the client certificate (DNS name `client`, no extended key usage) is for
/// servers that demand mutual TLS. Nothing outside this value trusts the CA: the
/// web PKI roots refuse both leaves with "unknown issuer".
#[derive(Debug, Clone)]
pub struct TestPki {
    /// The self-signed CA certificate (common name "barrage test CA").
    pub ca_pem: String,
    /// The server certificate, for `localhost` and `127.0.0.1`.
    pub server_cert_pem: String,
    /// The server certificate's private key (PKCS#8).
    pub server_key_pem: String,
    /// The client certificate for mutual TLS.
    pub client_cert_pem: String,
    /// The client certificate's private key (PKCS#8).
    pub client_key_pem: String,
}

impl TestPki {
    /// Generates a CA, a server leaf and a client certificate (ECDSA P-256 keys).
    ///
    /// # Panics
    /// When rcgen cannot generate a key or sign a certificate.
    pub fn generate() -> TestPki {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca_params =
            rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "barrage test CA");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA certificate");
        let leaf = |names: &[&str]| {
            let key = rcgen::KeyPair::generate().expect("leaf key");
            let names = names.iter().map(|n| n.to_string()).collect::<Vec<_>>();
            let cert = rcgen::CertificateParams::new(names)
                .expect("leaf parameters")
                .signed_by(&key, &*ca)
                .expect("leaf certificate");
            (cert.pem(), key.serialize_pem())
        };
        let (server_cert_pem, server_key_pem) = leaf(&["localhost", "127.0.0.1"]);
        let (client_cert_pem, client_key_pem) = leaf(&["client"]);
        TestPki {
            ca_pem: ca.pem(),
            server_cert_pem,
            server_key_pem,
            client_cert_pem,
            client_key_pem,
        }
    }
}
