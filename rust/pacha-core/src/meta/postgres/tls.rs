//! TLS to PostgreSQL, with libpq's meanings of `sslmode` and `sslrootcert`, so that a URL
//! that works with `psql` works here (managed servers — RDS, Cloud SQL, Azure — often
//! require TLS).
//!
//! tokio-postgres itself knows `disable`, `prefer` and `require`, and no `sslrootcert`: both
//! are taken out of the URL here and the rest is left to its parser.
//! - `disable`: plain TCP.
//! - `prefer` (the default, as in libpq): TLS when the server offers it, without checking
//!   its certificate; plain TCP when it does not.
//! - `require`: TLS, the certificate not checked (libpq's meaning: it protects from
//!   eavesdroppers, not from an impostor), unless `sslrootcert` is given: then as
//!   `verify-ca`, as libpq does.
//! - `verify-ca`: the certificate must chain to the root certificates; `verify-full`: and
//!   name the URL's host. The roots: `sslrootcert=PATH` (PEM), `sslrootcert=system` (the
//!   operating system's), else `~/.postgresql/root.crt`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio_postgres::config::SslMode;
use tokio_postgres::Config;

/// What the URL's `sslmode` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The TLS settings taken out of a URL (`mode` is `None` when it names none: then the
/// parsed configuration's, `prefer` unless a `key=value` string says otherwise).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Requested {
    pub mode: Option<Mode>,
    pub root_cert: Option<String>,
}

/// How sessions connect: plain, or through rustls.
#[derive(Clone)]
pub(super) enum Connector {
    Plain,
    Tls(tokio_postgres_rustls::MakeRustlsConnect),
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Connector::Plain => "Plain",
            Connector::Tls(_) => "Tls",
        })
    }
}

/// Split `sslmode` and `sslrootcert` off a `postgresql://` URL's query (a `key=value`
/// connection string is left to tokio-postgres, which knows `disable`/`prefer`/`require`).
/// Errors are messages for the user.
pub(super) fn take_options(url: &str) -> Result<(String, Requested), String> {
    let mut requested = Requested {
        mode: None,
        root_cert: None,
    };
    // The query starts after the user information: a password may hold a `?`.
    let after_credentials = url.rfind('@').map_or(0, |at| at + 1);
    let Some((base, query)) = url[after_credentials..]
        .find('?')
        .filter(|_| url.contains("://"))
        .map(|at| {
            (
                &url[..after_credentials + at],
                &url[after_credentials + at + 1..],
            )
        })
    else {
        return Ok((url.to_string(), requested));
    };
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                requested.mode = Some(match decode(value).as_str() {
                    "disable" => Mode::Disable,
                    // libpq's `allow` tries plain first; TLS when offered is no weaker.
                    "allow" | "prefer" => Mode::Prefer,
                    "require" => Mode::Require,
                    "verify-ca" => Mode::VerifyCa,
                    "verify-full" => Mode::VerifyFull,
                    other => {
                        return Err(format!(
                            "sslmode={other:?} is not a TLS mode; use disable, prefer, require, \
                             verify-ca or verify-full"
                        ))
                    }
                })
            }
            "sslrootcert" => requested.root_cert = Some(decode(value)),
            _ => kept.push(pair),
        }
    }
    let rest = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, requested))
}

/// `%XX` escapes decoded (a path in a URL may be written with them); anything malformed is
/// kept as written.
fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Set `config`'s TLS mode for `requested` and build the connector. Errors are messages for
/// the user.
pub(super) fn connector(requested: &Requested, config: &mut Config) -> Result<Connector, String> {
    let system = requested.root_cert.as_deref() == Some("system");
    let mode = requested.mode.unwrap_or(match config.get_ssl_mode() {
        // As libpq 16: the system's roots mean checking the host name too.
        _ if system => Mode::VerifyFull,
        SslMode::Disable => Mode::Disable,
        SslMode::Require => Mode::Require,
        _ => Mode::Prefer,
    });
    if system && mode != Mode::VerifyFull {
        // Any public CA would do for a check without the host name: libpq refuses it too.
        return Err("sslrootcert=system needs sslmode=verify-full (the default with it)".into());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    // `require` checks the chain when roots are given or ~/.postgresql/root.crt exists, as
    // libpq does.
    let checked = matches!(mode, Mode::VerifyCa | Mode::VerifyFull)
        || (mode == Mode::Require && (requested.root_cert.is_some() || default_roots().is_some()));
    let verifier: Arc<dyn ServerCertVerifier> = if mode == Mode::Disable {
        config.ssl_mode(SslMode::Disable);
        return Ok(Connector::Plain);
    } else if !checked {
        Arc::new(Unchecked(provider.clone()))
    } else {
        let webpki =
            WebPkiServerVerifier::builder_with_provider(roots(requested)?, provider.clone())
                .build()
                .map_err(|e| format!("cannot use the root certificates ({e})"))?;
        if mode == Mode::VerifyFull {
            webpki
        } else {
            Arc::new(AnyName(webpki))
        }
    };
    config.ssl_mode(if mode == Mode::Prefer {
        SslMode::Prefer
    } else {
        SslMode::Require
    });
    let tls = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("cannot set up TLS ({e})"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Connector::Tls(
        tokio_postgres_rustls::MakeRustlsConnect::new(tls),
    ))
}

/// The root certificates a checking mode trusts (see the module docs).
fn roots(requested: &Requested) -> Result<Arc<RootCertStore>, String> {
    let mut store = RootCertStore::empty();
    let path = match requested.root_cert.as_deref() {
        Some("system") => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(
                    "sslrootcert=system, but no CA certificates were found on this \
                     system; install them (Debian: ca-certificates) or give \
                     sslrootcert=PATH"
                        .into(),
                );
            }
            return Ok(Arc::new(store));
        }
        Some(path) => PathBuf::from(path),
        None => match default_roots() {
            Some(path) => path,
            None => {
                return Err(
                    "this sslmode checks the server's certificate: give the CA that \
                     signed it as sslrootcert=PATH (a PEM file) in the URL, or \
                     sslrootcert=system, or put it in ~/.postgresql/root.crt"
                        .into(),
                )
            }
        },
    };
    let certs = CertificateDer::pem_file_iter(&path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| {
            format!(
                "cannot read the root certificates in {} ({e}); give a PEM file as sslrootcert",
                path.display()
            )
        })?;
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "{} holds no usable certificate; give the CA's PEM file as sslrootcert",
            path.display()
        ));
    }
    Ok(Arc::new(store))
}

/// libpq's default root certificates, `~/.postgresql/root.crt`, when it exists.
fn default_roots() -> Option<PathBuf> {
    let path = Path::new(&std::env::var_os("HOME")?).join(".postgresql/root.crt");
    path.is_file().then_some(path)
}

/// `require`/`prefer` without roots: any certificate, as libpq (the handshake's signatures
/// are still checked, so the session is encrypted to whoever holds the certificate's key).
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain is checked, the host name is not.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_options_leave_the_url() {
        let (rest, requested) = take_options(
            "postgresql://u@h:5/db?sslmode=verify-full&application_name=x&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .expect("parse");
        assert_eq!(rest, "postgresql://u@h:5/db?application_name=x");
        assert_eq!(requested.mode, Some(Mode::VerifyFull));
        assert_eq!(requested.root_cert.as_deref(), Some("/tmp/ca.pem"));
        let (rest, requested) = take_options("postgresql://u@h/db?sslmode=require").expect("ok");
        assert_eq!(
            (rest.as_str(), requested.mode),
            ("postgresql://u@h/db", Some(Mode::Require))
        );
        let (rest, requested) = take_options("host=h sslmode=disable").expect("kv");
        assert_eq!(
            (rest.as_str(), requested.mode),
            ("host=h sslmode=disable", None)
        );
        assert!(take_options("postgresql://h/db?sslmode=bogus")
            .expect_err("bogus")
            .contains("verify-full"));
        assert_eq!(decode("%zz%41"), "%zzA");
        // A `?` in the password is not the query.
        let (rest, requested) =
            take_options("postgresql://u:p?w@h/db?sslmode=require").expect("password");
        assert_eq!(
            (rest.as_str(), requested.mode),
            ("postgresql://u:p?w@h/db", Some(Mode::Require))
        );
    }
}
