//! Mutual TLS between the interchange and its managers (`encrypted: true`).
//!
//! At start the interchange makes a private certificate authority, signs a server
//! certificate for itself and one client certificate for managers, and writes what managers
//! need — `ca.pem`, `manager.pem`, `manager.key` (mode 0600) — to the certificate
//! directory. Both sides accept only certificates of that authority, so only processes that
//! can read the directory (the endpoint's user, its batch jobs) can connect. Keys are new at
//! every engine start. The server name managers check is [`SERVER_NAME`], not an address:
//! the address managers reach is whatever route works.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// The name in the interchange's certificate.
pub const SERVER_NAME: &str = "gc-htex-interchange";

/// TLS set-up failures.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Making keys or certificates failed.
    #[error("cannot make certificates: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the material.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
    /// A certificate file could not be read or written.
    #[error("{path:?}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A certificate file holds no usable PEM.
    #[error("{path:?}: {detail}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn write_private(path: &Path, text: &str) -> Result<(), TlsError> {
    let err = |source| TlsError::File {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(err)?;
    f.write_all(text.as_bytes()).map_err(err)
}

/// Make the authority and certificates, write the managers' files into `cert_dir`, and
/// return the interchange's server configuration.
pub fn make_server(cert_dir: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    std::fs::create_dir_all(cert_dir).map_err(|source| TlsError::File {
        path: cert_dir.to_path_buf(),
        source,
    })?;
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "gc-htex endpoint authority");
    let ca = ca_params.self_signed(&ca_key)?;

    let server_key = KeyPair::generate()?;
    let server = CertificateParams::new(vec![SERVER_NAME.to_string()])?.signed_by(
        &server_key,
        &ca,
        &ca_key,
    )?;
    let client_key = KeyPair::generate()?;
    let mut client_params = CertificateParams::new(Vec::<String>::new())?;
    client_params
        .distinguished_name
        .push(DnType::CommonName, "gc-htex worker manager");
    let client = client_params.signed_by(&client_key, &ca, &ca_key)?;

    write_private(&cert_dir.join("ca.pem"), &ca.pem())?;
    write_private(&cert_dir.join("manager.pem"), &client.pem())?;
    write_private(&cert_dir.join("manager.key"), &client_key.serialize_pem())?;

    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone())?;
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
    let key = PrivateKeyDer::try_from(server_key.serialize_der())
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![server.der().clone()], key)?;
    Ok(Arc::new(config))
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_path_buf(),
            detail: "no certificate".into(),
        });
    }
    Ok(certs)
}

/// The manager's client configuration, from the files [`make_server`] wrote.
pub fn load_client(cert_dir: &Path) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_pem_certs(&cert_dir.join("ca.pem"))? {
        roots.add(cert)?;
    }
    let chain = read_pem_certs(&cert_dir.join("manager.pem"))?;
    let key_path = cert_dir.join("manager.key");
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| TlsError::Pem {
        path: key_path,
        detail: e.to_string(),
    })?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// The name the manager checks in the interchange's certificate.
pub fn server_name() -> ServerName<'static> {
    ServerName::DnsName(
        rustls::pki_types::DnsName::try_from(SERVER_NAME)
            .expect("SERVER_NAME is a valid DNS name")
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Handshake over an in-memory pipe; the server's verdict.
    async fn server_accepts(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (a, b) = tokio::io::duplex(64 * 1024);
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        let connector = tokio_rustls::TlsConnector::from(client);
        let server_side = async move {
            let mut s = acceptor.accept(a).await.ok()?;
            let mut buf = [0u8; 4];
            s.read_exact(&mut buf).await.ok()?;
            Some(buf)
        };
        let client_side = async move {
            if let Ok(mut c) = connector.connect(server_name(), b).await {
                let _ = c.write_all(b"ping").await;
                let _ = c.flush().await;
                // Keep the connection open until the server has read.
                let mut buf = [0u8; 1];
                let _ = c.read(&mut buf).await;
            }
        };
        let (got, ()) = tokio::join!(server_side, async {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), client_side).await;
        });
        got == Some(*b"ping")
    }

    #[tokio::test]
    async fn only_managers_with_this_starts_certificate_get_in() {
        let dir = tempfile::tempdir().unwrap();
        let server = make_server(dir.path()).unwrap();
        for f in ["ca.pem", "manager.pem", "manager.key"] {
            let mode = std::fs::metadata(dir.path().join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let good = load_client(dir.path()).unwrap();
        assert!(server_accepts(Arc::clone(&server), good).await);

        // A manager of another engine start (another authority) is refused.
        let other = tempfile::tempdir().unwrap();
        make_server(other.path()).unwrap();
        let stranger = load_client(other.path()).unwrap();
        assert!(!server_accepts(Arc::clone(&server), stranger).await);

        // A client that trusts the authority but has no certificate of its own is refused.
        let mut roots = RootCertStore::empty();
        for c in read_pem_certs(&dir.path().join("ca.pem")).unwrap() {
            roots.add(c).unwrap();
        }
        let anonymous = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        assert!(!server_accepts(server, Arc::new(anonymous)).await);
    }

    #[test]
    fn missing_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = load_client(dir.path()).unwrap_err();
        assert!(e.to_string().contains("ca.pem"), "{e}");
    }
}
