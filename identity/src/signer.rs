//! A local signing identity: a certificate and its P-256 private key.
//!
//! Signatures are what Fabric verifiers accept: ECDSA over SHA-256 of the message, DER-encoded
//! and normalised to low-S. The key is held by `ring`, which signs with fresh randomness.

use crate::certificate::{Certificate, pem_block};
use crate::error::IdentityError;
use crate::msp::serialize_identity;
use crate::signature::normalize_low_s;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, KeyPair};
use std::path::Path;

/// A certificate plus private key that signs as `msp_id`.
pub struct SigningIdentity {
    msp_id: String,
    cert_pem: Vec<u8>,
    certificate: Certificate,
    serialized: Vec<u8>,
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

impl std::fmt::Debug for SigningIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningIdentity")
            .field("msp_id", &self.msp_id)
            .field("subject", &self.certificate.subject)
            .finish_non_exhaustive()
    }
}

impl SigningIdentity {
    /// Builds a signer from a PEM certificate and a PKCS#8 PEM P-256 private key; fails when
    /// the key does not belong to the certificate.
    pub fn from_pem(
        msp_id: &str,
        cert_pem: &[u8],
        key_pkcs8_pem: &[u8],
    ) -> Result<SigningIdentity, IdentityError> {
        let certificate = Certificate::from_pem(cert_pem)?;
        let key_der = pem_block(key_pkcs8_pem, "PRIVATE KEY", "PKCS#8 private key")?;
        let rng = SystemRandom::new();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &key_der, &rng)
            .map_err(|e| IdentityError::Key(format!("not a PKCS#8 P-256 key: {e}")))?;
        if key.public_key().as_ref() != certificate.public_key.as_slice() {
            return Err(IdentityError::Key(format!(
                "the private key does not match the certificate '{}'",
                certificate.subject
            )));
        }
        Ok(SigningIdentity {
            msp_id: msp_id.to_owned(),
            serialized: serialize_identity(msp_id, cert_pem),
            cert_pem: cert_pem.to_vec(),
            certificate,
            key,
            rng,
        })
    }

    /// Reads the certificate and key files.
    pub fn load(
        msp_id: &str,
        cert_path: &Path,
        key_path: &Path,
    ) -> Result<SigningIdentity, IdentityError> {
        let cert = std::fs::read(cert_path)
            .map_err(|e| IdentityError::io("read certificate", cert_path, e))?;
        let key = std::fs::read(key_path)
            .map_err(|e| IdentityError::io("read private key", key_path, e))?;
        SigningIdentity::from_pem(msp_id, &cert, &key)
    }

    /// The MSP this identity signs for.
    pub fn msp_id(&self) -> &str {
        &self.msp_id
    }

    /// The certificate PEM exactly as read.
    pub fn cert_pem(&self) -> &[u8] {
        &self.cert_pem
    }

    /// The parsed certificate.
    pub fn certificate(&self) -> &Certificate {
        &self.certificate
    }

    /// `msp.SerializedIdentity{mspid, id_bytes = certificate PEM}`: the creator / endorser bytes.
    pub fn serialized(&self) -> &[u8] {
        &self.serialized
    }

    /// Signs `message`: ECDSA P-256 over SHA-256(message), DER, low-S.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let signature = self
            .key
            .sign(&self.rng, message)
            .expect("ring signs with a validated P-256 key; only a broken system RNG fails");
        normalize_low_s(signature.as_ref()).expect("ring produces well-formed DER signatures")
    }
}
