//! [`TestPki`]: a throwaway CA plus server and client certificates (PEM files) for TLS tests.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use crate::mosquitto::TlsFiles;

/// PEM files written by [`TestPki::generate`]. The server certificate is valid for
/// `127.0.0.1`, `::1` and `localhost`; both leaf certificates are signed by the CA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestPki {
    /// CA certificate (trust anchor for both sides).
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestPki {
    /// Generates the CA and leaf certificates (ECDSA P-256) into `dir`.
    ///
    /// # Errors
    /// Certificate generation or writing a file failed.
    pub fn generate(dir: &Path) -> anyhow::Result<TestPki> {
        let ca_key = KeyPair::generate().context("generating the CA key")?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "rr-testkit CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key).context("signing the CA")?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_names = vec!["127.0.0.1".into(), "::1".into(), "localhost".into()];
        let (server_cert, server_key) = leaf(
            server_names,
            "127.0.0.1",
            ExtendedKeyUsagePurpose::ServerAuth,
            &issuer,
        )?;
        let (client_cert, client_key) = leaf(
            vec!["rr-testkit-client".into()],
            "rr-testkit-client",
            ExtendedKeyUsagePurpose::ClientAuth,
            &issuer,
        )?;

        let pki = TestPki {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        };
        write(&pki.ca, &ca_cert.pem())?;
        write(&pki.server_cert, &server_cert)?;
        write(&pki.server_key, &server_key)?;
        write(&pki.client_cert, &client_cert)?;
        write(&pki.client_key, &client_key)?;
        Ok(pki)
    }

    /// The server side as mosquitto options.
    #[must_use]
    pub fn server_files(&self, require_certificate: bool) -> TlsFiles {
        TlsFiles {
            ca: self.ca.clone(),
            cert: self.server_cert.clone(),
            key: self.server_key.clone(),
            require_certificate,
        }
    }
}

/// A certificate and key (PEM) signed by `issuer`.
fn leaf(
    names: Vec<String>,
    common_name: &str,
    usage: ExtendedKeyUsagePurpose,
    issuer: &Issuer<'_, KeyPair>,
) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate().context("generating a leaf key")?;
    let mut params = CertificateParams::new(names)?;
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    let cert = params
        .signed_by(&key, issuer)
        .with_context(|| format!("signing the certificate for {common_name}"))?;
    Ok((cert.pem(), key.serialize_pem()))
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}
