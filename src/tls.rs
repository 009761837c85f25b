//! The rustls client setup shared by the IMAP reader and the SMTP sender: the system's roots
//! plus, when configured, a private CA given as PEM text.
//!
//! Owns only building the `TlsConnector`. Must not read files or open sockets: callers read
//! the CA file and do the handshake themselves.

use std::sync::Arc;
use tokio_rustls::rustls::pki_types::{pem::PemObject, CertificateDer};
use tokio_rustls::rustls::{self, RootCertStore};
use tokio_rustls::TlsConnector;

/// Why a TLS client could not be set up. Each is a configuration fault no retry can fix.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("no PEM certificate found")]
    NoCertificate,
    #[error("{0}")]
    Pem(String),
    #[error("not usable as a root: {0}")]
    Root(String),
    #[error("TLS: {0}")]
    Setup(String),
}

/// The certificates in `pem`. Text without a single certificate in it is refused rather than
/// silently trusting nothing extra.
pub fn pem_certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    Ok(certs)
}

/// A connector trusting the system's roots and the certificates in `ca_pem`.
pub fn connector(ca_pem: Option<&[u8]>) -> Result<TlsConnector, TlsError> {
    let mut roots = RootCertStore::empty();
    // Unreadable system certificates are skipped: a private CA alone is a valid setup.
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert);
    }
    if let Some(pem) = ca_pem {
        for cert in pem_certificates(pem)? {
            roots.add(cert).map_err(|e| TlsError::Root(e.to_string()))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setup(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_without_a_certificate_is_refused() {
        assert!(matches!(pem_certificates(b"not a certificate"), Err(TlsError::NoCertificate)));
        assert!(connector(Some(b"")).is_err());
    }

    #[test]
    fn a_certificate_that_is_not_der_is_refused_as_a_root() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert_eq!(pem_certificates(pem).expect("one PEM block").len(), 1);
        assert!(matches!(connector(Some(pem)), Err(TlsError::Root(_))));
    }

    #[test]
    fn the_system_roots_alone_make_a_connector() {
        assert!(connector(None).is_ok());
    }
}
