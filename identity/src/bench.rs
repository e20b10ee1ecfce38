//! The signature-verification micro-benchmark behind `gridledger bench crypto`.
//!
//! It signs a batch of distinct messages once, then verifies them in a loop for a fixed time
//! with each implementation (`ring`, the production verifier, and the pure-Rust `p256` crate,
//! the alternative) on 1..=N threads, so the choice of verifier is made by measurement on this
//! machine. Timing lives here and in the CLI only; tests never assert on it.

use crate::material::{CertificateAuthority, LeafSpec, SEEDED_NOT_BEFORE, Seed};
use crate::signature::verify_p256;
use crate::signer::SigningIdentity;
use p256::ecdsa::signature::Verifier as _;
use std::time::{Duration, Instant};

/// A verifier under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verifier {
    /// `ring` (the production path, including the DER and low-S checks).
    Ring,
    /// RustCrypto `p256` (pure Rust).
    P256,
}

/// One measurement.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Measurement {
    pub verifier: Verifier,
    pub threads: usize,
    pub verifies: u64,
    pub seconds: f64,
    pub verifies_per_sec: f64,
}

/// Signed messages ready to verify.
pub struct Corpus {
    public_key: Vec<u8>,
    items: Vec<(Vec<u8>, Vec<u8>)>,
}

impl Corpus {
    /// `count` distinct ~300-byte messages signed by one P-256 key.
    pub fn new(count: usize) -> Result<Corpus, crate::IdentityError> {
        let seed = Seed::from_text("bench");
        let ca = CertificateAuthority::new_root(
            &seed,
            "BenchMSP",
            "ca.bench",
            SEEDED_NOT_BEFORE,
            SEEDED_NOT_BEFORE + 86_400,
        )?;
        let spec = LeafSpec::new(
            "signer",
            Some(crate::Role::Client),
            SEEDED_NOT_BEFORE,
            SEEDED_NOT_BEFORE + 86_400,
        );
        let issued = ca.issue("BenchMSP", &spec)?;
        let signer = SigningIdentity::from_pem(
            "BenchMSP",
            issued.cert_pem.as_bytes(),
            issued.key_pem.as_bytes(),
        )?;
        let items = (0..count.max(1))
            .map(|i| {
                let message: Vec<u8> = (0..300u32).map(|b| (b as usize ^ i) as u8).collect();
                let signature = signer.sign(&message);
                (message, signature)
            })
            .collect();
        Ok(Corpus {
            public_key: signer.certificate().public_key.clone(),
            items,
        })
    }

    fn verify_one(
        &self,
        verifier: Verifier,
        index: usize,
        p256_key: &p256::ecdsa::VerifyingKey,
    ) -> bool {
        let (message, signature) = &self.items[index % self.items.len()];
        match verifier {
            Verifier::Ring => verify_p256(&self.public_key, message, signature).is_ok(),
            Verifier::P256 => p256::ecdsa::Signature::from_der(signature)
                .map(|sig| p256_key.verify(message, &sig).is_ok())
                .unwrap_or(false),
        }
    }

    /// Verifies for `duration` on `threads` threads; panics never, counts only successes.
    pub fn measure(&self, verifier: Verifier, threads: usize, duration: Duration) -> Measurement {
        let p256_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&self.public_key)
            .expect("the corpus key is a valid P-256 point");
        let start = Instant::now();
        let verifies: u64 = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads.max(1))
                .map(|t| {
                    let p256_key = &p256_key;
                    scope.spawn(move || {
                        let mut done = 0u64;
                        let mut i = t;
                        while start.elapsed() < duration {
                            for _ in 0..16 {
                                if self.verify_one(verifier, i, p256_key) {
                                    done += 1;
                                }
                                i += 1;
                            }
                        }
                        done
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        let seconds = start.elapsed().as_secs_f64();
        Measurement {
            verifier,
            threads,
            verifies,
            seconds,
            verifies_per_sec: verifies as f64 / seconds,
        }
    }
}
