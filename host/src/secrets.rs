//! What every secret goes through: random bytes from the operating system
//! (getrandom) and SHA-256, raw or as lower-case hex. Comparisons of
//! secrets use `subtle` (constant time) and signatures `hmac`, at their
//! call sites.

use sha2::{Digest, Sha256};

/// `N` bytes from the operating system's random source.
///
/// # Errors
/// When the operating system has no randomness to give.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}

/// The SHA-256 of `bytes`, as raw bytes.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The SHA-256 of `bytes`, as lower-case hex: how Airlock names a
/// component, a config file, a token or a body it has seen.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_print_as_expected_and_randomness_differs() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hex::encode(sha256(b"abc")), sha256_hex(b"abc"));
        let (a, b) = (random_bytes::<16>().unwrap(), random_bytes::<16>().unwrap());
        assert_ne!(a, b);
    }
}
