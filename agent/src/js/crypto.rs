//! `k6/crypto`'s natives: k6's hash functions and HMACs (RustCrypto), and random bytes.
//! `createHash`/`createHMAC` objects keep their input on the JS side and hash it all at
//! `digest`, so a digest taken twice is the same (as in k6).

use digest::{Digest, KeyInit, Mac};
use hmac::Hmac;
use rquickjs::module::Exports;
use rquickjs::{Array, ArrayBuffer, Ctx, Exception, Function, Value};

use super::encoding::{input_bytes, output};

/// The natives this module adds to `barrage:host`.
pub(crate) const NATIVES: &[&str] = &["cryptoHash", "cryptoHmac", "cryptoRandomBytes"];

/// The algorithms k6 names (the tests check each against k6's digest).
#[cfg(test)]
pub(crate) const ALGORITHMS: &[&str] = &[
    "md4",
    "md5",
    "sha1",
    "sha256",
    "sha384",
    "sha512",
    "sha512_224",
    "sha512_256",
    "ripemd160",
];

/// The hash of `parts` one after another, or `None` for an unknown algorithm.
pub(crate) fn hash(algorithm: &str, parts: &[Vec<u8>]) -> Option<Vec<u8>> {
    fn run<D: Digest>(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut d = D::new();
        for p in parts {
            d.update(p);
        }
        d.finalize().to_vec()
    }
    Some(match algorithm {
        "md4" => run::<md4::Md4>(parts),
        "md5" => run::<md5::Md5>(parts),
        "sha1" => run::<sha1::Sha1>(parts),
        "sha256" => run::<sha2::Sha256>(parts),
        "sha384" => run::<sha2::Sha384>(parts),
        "sha512" => run::<sha2::Sha512>(parts),
        "sha512_224" => run::<sha2::Sha512_224>(parts),
        "sha512_256" => run::<sha2::Sha512_256>(parts),
        "ripemd160" => run::<ripemd::Ripemd160>(parts),
        _ => return None,
    })
}

/// The HMAC of `parts` under `key`, or `None` for an unknown algorithm.
pub(crate) fn hmac(algorithm: &str, key: &[u8], parts: &[Vec<u8>]) -> Option<Vec<u8>> {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[Vec<u8>]) -> Vec<u8> {
        // Any key length is valid for an HMAC.
        let Ok(mut m) = <M as KeyInit>::new_from_slice(key) else {
            return Vec::new();
        };
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }
    Some(match algorithm {
        "md4" => run::<Hmac<md4::Md4>>(key, parts),
        "md5" => run::<Hmac<md5::Md5>>(key, parts),
        "sha1" => run::<Hmac<sha1::Sha1>>(key, parts),
        "sha256" => run::<Hmac<sha2::Sha256>>(key, parts),
        "sha384" => run::<Hmac<sha2::Sha384>>(key, parts),
        "sha512" => run::<Hmac<sha2::Sha512>>(key, parts),
        "sha512_224" => run::<Hmac<sha2::Sha512_224>>(key, parts),
        "sha512_256" => run::<Hmac<sha2::Sha512_256>>(key, parts),
        "ripemd160" => run::<Hmac<ripemd::Ripemd160>>(key, parts),
        _ => return None,
    })
}

/// The input of a hash: one string or ArrayBuffer, or an array of them (the updates of
/// a `createHash` object).
fn parts<'js>(ctx: &Ctx<'js>, v: &Value<'js>, what: &str) -> rquickjs::Result<Vec<Vec<u8>>> {
    match v.as_array() {
        Some(a) if v.as_string().is_none() => collect(ctx, a, what),
        _ => Ok(vec![input_bytes(ctx, v, what)?]),
    }
}

fn collect<'js>(ctx: &Ctx<'js>, a: &Array<'js>, what: &str) -> rquickjs::Result<Vec<Vec<u8>>> {
    let mut out = Vec::with_capacity(a.len());
    for v in a.iter::<Value>() {
        out.push(input_bytes(ctx, &v?, what)?);
    }
    Ok(out)
}

/// Adds [`NATIVES`] to `barrage:host`'s exports.
pub(crate) fn export<'js>(ctx: &Ctx<'js>, exports: &Exports<'js>) -> rquickjs::Result<()> {
    exports.export(
        "cryptoHash",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, alg: String, input: Value<'js>, enc: String| {
                let what = format!("{alg} failed: ");
                let parts = parts(&ctx, &input, &what)?;
                let Some(sum) = hash(&alg, &parts) else {
                    return Err(Exception::throw_type(
                        &ctx,
                        &format!("invalid algorithm: {alg}"),
                    ));
                };
                output(&ctx, &sum, &enc)
            },
        )?,
    )?;
    exports.export(
        "cryptoHmac",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, alg: String, key: Value<'js>, input: Value<'js>, enc: String| {
                let key = input_bytes(&ctx, &key, "hmac: ")?;
                let parts = parts(&ctx, &input, "hmac: ")?;
                let Some(sum) = hmac(&alg, &key, &parts) else {
                    return Err(Exception::throw_type(
                        &ctx,
                        &format!("invalid algorithm: {alg}"),
                    ));
                };
                output(&ctx, &sum, &enc)
            },
        )?,
    )?;
    exports.export(
        "cryptoRandomBytes",
        Function::new(ctx.clone(), |ctx: Ctx<'js>, n: f64| {
            if !(n >= 1.0 && n.fract() == 0.0 && n <= f64::from(u32::MAX)) {
                return Err(Exception::throw_message(&ctx, "invalid size"));
            }
            let mut bytes = vec![0u8; n as usize];
            rand::Rng::fill(&mut rand::rng(), &mut bytes[..]);
            Ok(ArrayBuffer::new(ctx.clone(), bytes)?.into_value())
        })?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::js::encoding::hex;

    fn hex_of(alg: &str, input: &str) -> String {
        hex(&hash(alg, &[input.as_bytes().to_vec()]).unwrap_or_default())
    }

    #[test]
    fn every_algorithm_gives_k6s_digest_of_hello() {
        // k6 1.1: crypto[alg]('hello', 'hex').
        let want = [
            ("md4", "866437cb7a794bce2b727acc0362ee27"),
            ("md5", "5d41402abc4b2a76b9719d911017c592"),
            ("sha1", "aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d"),
            (
                "sha256",
                "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            ),
            (
                "sha384",
                "59e1748777448c69de6b800d7a33bbfb9ff1b463e44354c3553bcdb9c666fa90125a3c79f90397bdf5f6a13de828684f",
            ),
            (
                "sha512",
                "9b71d224bd62f3785d96d46ad3ea3d73319bfbc2890caadae2dff72519673ca72323c3d99ba5c11d7c7acc6e14b8c5da0c4663475c2e5c3adef46f73bcdec043",
            ),
            (
                "sha512_224",
                "fe8509ed1fb7dcefc27e6ac1a80eddbec4cb3d2c6fe565244374061c",
            ),
            (
                "sha512_256",
                "e30d87cfa2a75db545eac4d61baf970366a8357c7f72fa95b52d0accb698f13a",
            ),
            ("ripemd160", "108f07b8382412612c048d07d13f814118445acd"),
        ];
        assert_eq!(want.len(), ALGORITHMS.len());
        for (alg, digest) in want {
            assert_eq!(hex_of(alg, "hello"), digest, "{alg}");
        }
        assert_eq!(hash("nope", &[]), None);
    }

    #[test]
    fn updates_hash_as_one_input() {
        let split = hash("sha1", &[b"hel".to_vec(), b"lo".to_vec()]);
        assert_eq!(split, hash("sha1", &[b"hello".to_vec()]));
    }

    #[test]
    fn hmacs_match_k6() {
        // k6 1.1: crypto.hmac(alg, 'key', 'data', 'hex') and ('k', 'd').
        let h = |alg: &str, k: &str, d: &str| {
            hex(&hmac(alg, k.as_bytes(), &[d.as_bytes().to_vec()]).unwrap_or_default())
        };
        assert_eq!(
            h("sha256", "key", "data"),
            "5031fe3d989c6d1537a013fa6e739da23463fdaec3b70137d828e36ace221bd0"
        );
        assert_eq!(
            h("sha512_224", "k", "d"),
            "7882112b43ad00ad1a01bc1a8df3745aad04e27a999ceb60da32bb18"
        );
        assert_eq!(
            h("ripemd160", "k", "d"),
            "25e1fc86312e5356db40a455e2a7cffa50fb21fa"
        );
        assert_eq!(hmac("nope", b"k", &[]), None);
    }
}
