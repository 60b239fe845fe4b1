//! `serve --tls`: HTTPS and WSS on the testbed's listener, with a CA made at start.
//!
//! The CA (`sallyport-testbed CA <random>`, ECDSA P-256) signs one leaf for `127.0.0.1`, `::1` and
//! `localhost`; both live only in memory and in the CA PEM file the testbed writes for
//! `AWS_CA_BUNDLE`. The leaf is served with the CA behind it; rustls with the aws-lc-rs
//! provider (the one the SDK's client already builds), HTTP/1.1 only.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA and the server configuration whose leaf it signed.
pub struct TlsIdentity {
    /// The CA certificate, PEM: what a client must trust (`AWS_CA_BUNDLE`).
    pub ca_pem: String,
    pub ca_der: CertificateDer<'static>,
    pub server_config: Arc<rustls::ServerConfig>,
}

impl TlsIdentity {
    /// A fresh CA and a leaf for the loopback names.
    pub fn generate() -> anyhow::Result<TlsIdentity> {
        let ca_key = KeyPair::generate().context("generating the CA key")?;
        let mut ca = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        // A name of its own per start: a client holding an older testbed's CA then sees an
        // unknown issuer, not a known issuer with a bad signature.
        let id = uuid::Uuid::new_v4().simple().to_string();
        ca.distinguished_name = name(&format!("sallyport-testbed CA {}", &id[..12]));
        let ca_cert = ca.self_signed(&ca_key).context("self-signing the CA")?;
        let issuer = Issuer::new(ca, ca_key);

        let leaf_key = KeyPair::generate().context("generating the server key")?;
        let sans = ["127.0.0.1", "::1", "localhost"]
            .map(str::to_owned)
            .to_vec();
        let mut leaf = CertificateParams::new(sans).context("server certificate parameters")?;
        leaf.distinguished_name = name("sallyport-testbed");
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf.use_authority_key_identifier_extension = true;
        let leaf_cert = leaf
            .signed_by(&leaf_key, &issuer)
            .context("signing the server certificate")?;

        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
        let chain = vec![leaf_cert.der().clone(), ca_cert.der().clone()];
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("TLS server certificate")?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsIdentity {
            ca_pem: ca_cert.pem(),
            ca_der: ca_cert.der().clone(),
            server_config: Arc::new(config),
        })
    }

    /// Writes the CA PEM to `path` (for `AWS_CA_BUNDLE`).
    pub fn write_ca(&self, path: &Path) -> anyhow::Result<()> {
        std::fs::write(path, &self.ca_pem)
            .with_context(|| format!("writing the CA bundle {}", path.display()))
    }

    /// A client configuration that trusts only this CA (for tests of the testbed).
    pub fn client_config(&self) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca_der.clone()).context("adding the CA")?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}
