//! `k6/encoding`'s natives (base64 in k6's four alphabets) and what `k6/crypto` shares
//! with them: reading an input (a string as UTF-8, an ArrayBuffer as its bytes) and
//! writing an output in k6's encodings.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use rquickjs::module::Exports;
use rquickjs::{ArrayBuffer, Ctx, Exception, Function, Value};

/// The natives this module adds to `barrage:host`.
pub(crate) const NATIVES: &[&str] = &["b64encode", "b64decode", "hexEncode"];

/// k6's base64 alphabets by name (`std` for any other name, as in k6).
fn engine(name: &str) -> &'static base64::engine::GeneralPurpose {
    match name {
        "rawstd" => &STANDARD_NO_PAD,
        "url" => &URL_SAFE,
        "rawurl" => &URL_SAFE_NO_PAD,
        _ => &STANDARD,
    }
}

/// The bytes of a string (UTF-8) or an ArrayBuffer (typed arrays arrive as one from the
/// JS side); anything else is refused as k6 refuses it.
pub(crate) fn input_bytes(ctx: &Ctx<'_>, v: &Value<'_>, what: &str) -> rquickjs::Result<Vec<u8>> {
    if let Some(s) = v.as_string() {
        return Ok(s.to_string()?.into_bytes());
    }
    if let Some(ab) = v
        .as_object()
        .and_then(|o| ArrayBuffer::from_object(o.clone()))
    {
        // SAFETY: the bytes are copied at once; no JS runs (nothing can detach or
        // resize the buffer) while the slice is borrowed.
        #[allow(unsafe_code)]
        let bytes = unsafe { ab.as_bytes() };
        return Ok(bytes.unwrap_or_default().to_vec());
    }
    let kind = if v.is_number() {
        "number"
    } else if v.is_bool() {
        "boolean"
    } else if v.is_null() || v.is_undefined() {
        "null"
    } else {
        "object"
    };
    Err(Exception::throw_type(
        ctx,
        &format!("{what}invalid type {kind}, expected string, []byte or ArrayBuffer"),
    ))
}

/// `bytes` in one of k6's output encodings: `hex`, `base64`, `base64url`,
/// `base64rawurl`, or `binary` (an ArrayBuffer).
pub(crate) fn output<'js>(ctx: &Ctx<'js>, bytes: &[u8], enc: &str) -> rquickjs::Result<Value<'js>> {
    let text = match enc {
        "hex" => hex(bytes),
        "base64" => STANDARD.encode(bytes),
        "base64url" => URL_SAFE.encode(bytes),
        "base64rawurl" => URL_SAFE_NO_PAD.encode(bytes),
        "binary" => return Ok(ArrayBuffer::new_copy(ctx.clone(), bytes)?.into_value()),
        other => {
            return Err(Exception::throw_type(
                ctx,
                &format!("invalid output encoding: {other}"),
            ));
        }
    };
    rquickjs::String::from_str(ctx.clone(), &text).map(|s| s.into_value())
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

/// Decodes `text` in the alphabet `enc`, with Go's message on bad input
/// (`illegal base64 data at input byte N`).
pub(crate) fn decode(text: &[u8], enc: &str) -> Result<Vec<u8>, String> {
    engine(enc).decode(text).map_err(|e| {
        let at = match e {
            base64::DecodeError::InvalidByte(i, _)
            | base64::DecodeError::InvalidLastSymbol(i, _) => i,
            base64::DecodeError::InvalidLength(len) => len - len % 4,
            // Padding where there must be none, or none where there must be some.
            base64::DecodeError::InvalidPadding => text
                .iter()
                .position(|&b| b == b'=')
                .unwrap_or(text.len() - text.len() % 4),
        };
        format!("illegal base64 data at input byte {at}")
    })
}

/// Adds [`NATIVES`] to `barrage:host`'s exports.
pub(crate) fn export<'js>(ctx: &Ctx<'js>, exports: &Exports<'js>) -> rquickjs::Result<()> {
    exports.export(
        "b64encode",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, input: Value<'js>, enc: String| -> rquickjs::Result<String> {
                let bytes = input_bytes(&ctx, &input, "")?;
                Ok(engine(&enc).encode(bytes))
            },
        )?,
    )?;
    exports.export(
        "hexEncode",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, input: Value<'js>| -> rquickjs::Result<String> {
                Ok(hex(&input_bytes(&ctx, &input, "")?))
            },
        )?,
    )?;
    exports.export(
        "b64decode",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, input: Value<'js>, enc: String, as_string: bool| {
                let text = input_bytes(&ctx, &input, "")?;
                let bytes = decode(&text, &enc).map_err(|m| Exception::throw_message(&ctx, &m))?;
                if as_string {
                    let s = String::from_utf8_lossy(&bytes);
                    rquickjs::String::from_str(ctx.clone(), &s).map(|s| s.into_value())
                } else {
                    Ok(ArrayBuffer::new_copy(ctx.clone(), &bytes)?.into_value())
                }
            },
        )?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_four_alphabets_encode_as_k6_does() {
        // k6 1.1: b64encode(new Uint8Array([0,1,250,...,255]).buffer, enc).
        let bin = [0u8, 1, 250, 251, 252, 253, 254, 255];
        assert_eq!(engine("std").encode(bin), "AAH6+/z9/v8=");
        assert_eq!(engine("rawstd").encode(bin), "AAH6+/z9/v8");
        assert_eq!(engine("url").encode(bin), "AAH6-_z9_v8=");
        assert_eq!(engine("rawurl").encode(bin), "AAH6-_z9_v8");
        assert_eq!(engine("bogus").encode(bin), "AAH6+/z9/v8=");
        assert_eq!(engine("").encode("hé?>~"), "aMOpPz5+");
    }

    #[test]
    fn bad_input_is_refused_with_gos_byte_offset() {
        // k6 1.1's messages for the same inputs.
        assert_eq!(
            decode(b"!!!", "std"),
            Err("illegal base64 data at input byte 0".into())
        );
        assert_eq!(
            decode(b"aMOpPz4", "std"),
            Err("illegal base64 data at input byte 4".into())
        );
        assert_eq!(
            decode(b"aMOpPz4=", "rawstd"),
            Err("illegal base64 data at input byte 7".into())
        );
        assert_eq!(decode(b"aMOpPz4=", "std"), Ok("hé?>".as_bytes().to_vec()));
        assert_eq!(
            decode(b"AAH6-_z9_v8", "rawurl"),
            Ok(vec![0, 1, 250, 251, 252, 253, 254, 255])
        );
    }

    #[test]
    fn hex_is_lower_case_two_digits_a_byte() {
        assert_eq!(hex(&[0, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(hex(&[]), "");
    }
}
