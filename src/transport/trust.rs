//! Which TLS certificates are trusted: the platform's roots (as tokio-tungstenite's
//! `rustls-tls-native-roots` and the SDK's default client load them, through
//! `rustls-native-certs`) plus the certificates of a custom CA bundle (`AWS_CA_BUNDLE` or
//! the profile's `ca_bundle`), for TLS-inspecting proxies and the TLS testbed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A CA bundle file, read and parsed.
#[derive(Clone, Debug)]
pub struct CaBundle {
    pub path: PathBuf,
    /// Where the path came from (`AWS_CA_BUNDLE`, "ca_bundle in profile x").
    pub source: String,
    /// The file as read, for the SDK's trust store.
    pub pem: Vec<u8>,
    pub certs: Vec<CertificateDer<'static>>,
}

/// The CA bundle cannot be used.
#[derive(Clone, Debug, thiserror::Error)]
#[error("the CA bundle {path} (from {origin}) {problem}")]
pub struct CaBundleError {
    pub path: String,
    /// Where the path came from.
    pub origin: String,
    pub problem: String,
}

impl CaBundle {
    pub fn load(path: &Path, source: &str) -> Result<CaBundle, CaBundleError> {
        let err = |problem: String| CaBundleError {
            path: path.display().to_string(),
            origin: source.to_owned(),
            problem,
        };
        let pem = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => err("does not exist".into()),
            _ => err(format!("cannot be read: {e}")),
        })?;
        let mut certs = Vec::new();
        for cert in CertificateDer::pem_slice_iter(&pem) {
            certs.push(cert.map_err(|e| err(format!("is not valid PEM: {e}")))?);
        }
        if certs.is_empty() {
            return Err(err(
                "holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        Ok(CaBundle {
            path: path.to_owned(),
            source: source.to_owned(),
            pem,
            certs,
        })
    }
}

/// A rustls client configuration trusting the platform's roots plus `extra`.
pub fn client_config(extra: &[CertificateDer<'static>]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::debug!(
            "some platform root certificates could not be loaded: {:?}",
            native.errors
        );
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    let (extra_added, extra_ignored) = roots.add_parsable_certificates(extra.iter().cloned());
    tracing::debug!(
        platform = added,
        platform_ignored = ignored,
        bundle = extra_added,
        bundle_ignored = extra_ignored,
        "trusted root certificates"
    );
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => Arc::new(b.with_root_certificates(roots).with_no_client_auth()),
        // aws-lc-rs supports rustls's default versions, so this does not happen; should a
        // rustls release change that, TLS 1.3 alone still works with every AWS endpoint.
        Err(e) => {
            tracing::debug!("TLS defaults refused ({e}); using TLS 1.3 only");
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            Arc::new(
                rustls::ClientConfig::builder_with_provider(provider)
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .unwrap_or_else(|_| {
                        rustls::ClientConfig::builder_with_protocol_versions(&[
                            &rustls::version::TLS13,
                        ])
                    })
                    .with_root_certificates(roots)
                    .with_no_client_auth(),
            )
        }
    }
}

/// True when `err` (or its sources) is a certificate signed by an unknown authority.
pub fn is_unknown_issuer(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)) =
            e.downcast_ref::<rustls::Error>()
        {
            return true;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && is_unknown_issuer(inner)
        {
            return true;
        }
        cur = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate made for this test with
    /// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes
    /// -subj /CN=sallyport-test-ca -days 36500 -keyout /dev/null`.
    const PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBjzCCATWgAwIBAgIUZNtegE70EKIHKoDT3YmAd4IZ9e0wCgYIKoZIzj0EAwIw
HDEaMBgGA1UEAwwRc2FsbHlwb3J0LXRlc3QtY2EwIBcNMjYxMTMwMjAwODM4WhgP
MjEyNjExMDYyMDA4MzhaMBwxGjAYBgNVBAMMEXNhbGx5cG9ydC10ZXN0LWNhMFkw
EwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEd0h96Z4g7Vbxr2y+x5KcQzRvQVy7CrSp
ei5ObXhuPsL4YlCfRW7avV+iLN2LMhBIVFVeC5rGvJV63o1FLCFcT6NTMFEwHQYD
VR0OBBYEFLLfuqrUBO8PyWrSlvluk//OD6TcMB8GA1UdIwQYMBaAFLLfuqrUBO8P
yWrSlvluk//OD6TcMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIh
ALs4mFpqMTKXLCZMzecea5t13SdWifz8Wj4NsFBw5jMcAiAIJUlE+J9/sB1GV+SI
pAt7nCg7nkCwfpQj1zQHFQ1/sw==
-----END CERTIFICATE-----
";

    #[test]
    fn a_bundle_loads_its_certificates() {
        let dir = std::env::temp_dir().join(format!("sallyport-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.pem");
        std::fs::write(&good, format!("junk before\n{PEM}{PEM}")).unwrap();
        let b = CaBundle::load(&good, "AWS_CA_BUNDLE").unwrap();
        assert_eq!(b.certs.len(), 2);
        let mut roots = rustls::RootCertStore::empty();
        assert_eq!(roots.add_parsable_certificates(b.certs.clone()), (2, 0));
        assert_eq!(b.pem, std::fs::read(&good).unwrap());

        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = CaBundle::load(&empty, "ca_bundle in profile dev").unwrap_err();
        assert!(e.to_string().contains("empty.pem"), "{e}");
        assert!(e.to_string().contains("ca_bundle in profile dev"), "{e}");
        assert!(e.to_string().contains("no PEM certificate"), "{e}");

        let missing = dir.join("missing.pem");
        let e = CaBundle::load(&missing, "AWS_CA_BUNDLE").unwrap_err();
        assert!(e.to_string().contains("missing.pem"), "{e}");
        assert!(e.to_string().contains("does not exist"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unknown_issuer_is_found_through_io_wrappers() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        let io = std::io::Error::other(tls);
        assert!(is_unknown_issuer(&io));
        let other = std::io::Error::other(rustls::Error::DecryptError);
        assert!(!is_unknown_issuer(&other));
    }
}
