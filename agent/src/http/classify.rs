//! Mapping a transport error's cause chain to a k6 error code and a message.

use std::error::Error as StdError;

use super::error_code;
use super::h1::H1Error;
use crate::allow::NotAllowed;

/// Maps a transport error to a k6 error code and a message naming the whole cause chain.
pub(super) fn classify(err: &(dyn StdError + 'static)) -> (u32, String) {
    let mut message = err.to_string();
    let mut code = None;
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    let mut first = true;
    while let Some(e) = source {
        if !first {
            message.push_str(": ");
            message.push_str(&e.to_string());
        }
        first = false;
        if code.is_none() {
            code = error_code_of(e);
        }
        source = e.source();
    }
    (code.unwrap_or(error_code::GENERIC), message)
}

/// The k6 code for one error of a cause chain, when it is one we recognise.
fn error_code_of(e: &(dyn StdError + 'static)) -> Option<u32> {
    if let Some(mut io) = e.downcast_ref::<std::io::Error>() {
        // hyper-rustls wraps tokio-rustls' io::Error in another one, and io::Error's
        // `source()` skips what it wraps: unwrap by hand.
        while let Some(inner) = io.get_ref() {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(tls_code(tls));
            }
            match inner.downcast_ref::<std::io::Error>() {
                Some(inner_io) => io = inner_io,
                None => break,
            }
        }
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => Some(error_code::TCP_DIAL_REFUSED),
            std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::ConnectionAborted => {
                Some(error_code::TCP_RESET)
            }
            std::io::ErrorKind::BrokenPipe => Some(error_code::TCP_BROKEN_PIPE),
            std::io::ErrorKind::TimedOut => Some(error_code::TCP_DIAL_TIMEOUT),
            _ => None,
        };
    }
    if let Some(tls) = e.downcast_ref::<rustls::Error>() {
        return Some(tls_code(tls));
    }
    if let Some(h2) = e.downcast_ref::<h2::Error>() {
        let offset = h2.reason().map_or(0, |r| {
            let r = u32::from(r);
            // k6 numbers the 14 standard h2 error codes after the generic one.
            if r <= 0xd { r + 1 } else { 0 }
        });
        let base = if h2.is_go_away() {
            error_code::HTTP2_GOAWAY
        } else if h2.is_reset() {
            error_code::HTTP2_STREAM
        } else {
            error_code::HTTP2_CONNECTION
        };
        return Some(base + offset);
    }
    if e.is::<NotAllowed>() {
        return Some(error_code::BLOCKED_HOSTNAME);
    }
    match e.downcast_ref::<H1Error>() {
        Some(H1Error::NoAddress { .. }) => return Some(error_code::DNS_NO_SUCH_HOST),
        Some(H1Error::NotAllowed(_)) => return Some(error_code::BLOCKED_HOSTNAME),
        _ => {}
    }
    // hyper-util's connect error is private; its message is stable.
    let text = e.to_string();
    if text.starts_with("dns error") {
        let no_such_host = e.source().is_some_and(|s| {
            let s = s.to_string();
            s.contains("not known") || s.contains("No address") || s.contains("no such host")
        });
        return Some(if no_such_host {
            error_code::DNS_NO_SUCH_HOST
        } else {
            error_code::DNS
        });
    }
    if text.starts_with("invalid URL") {
        return Some(error_code::INVALID_URL);
    }
    None
}

fn tls_code(e: &rustls::Error) -> u32 {
    use rustls::CertificateError;
    match e {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
            error_code::TLS_UNKNOWN_AUTHORITY
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => error_code::TLS_HOSTNAME,
        _ => error_code::TLS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_io_error_is_1212() {
        let e = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(classify(&e).0, error_code::TCP_DIAL_REFUSED);
    }

    #[test]
    fn unknown_issuer_inside_io_error_is_1310() {
        let e = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        assert_eq!(classify(&e).0, error_code::TLS_UNKNOWN_AUTHORITY);
    }

    #[test]
    fn tls_error_inside_nested_io_errors_is_found() {
        let tls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
        );
        let wrapped = std::io::Error::other(tls);
        assert_eq!(classify(&wrapped).0, error_code::TLS_HOSTNAME);
    }
}
