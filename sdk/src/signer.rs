//! Who signs a client's requests: the [`Signer`] trait, so that a private key may live outside
//! the application (an HSM, a cloud KMS, a smart card), and its implementation for a local
//! [`SigningIdentity`] (certificate and key files).
//!
//! The SDK asks a signer for two things: the identity (MSP id and certificate PEM, which it
//! serializes once into Fabric's `msp.SerializedIdentity`, the `creator` of every header) and
//! ECDSA P-256 signatures over SHA-256 of messages. Whatever a signer returns passes through
//! [`sign_with`], which insists on DER and rewrites a high-S signature to its low-S twin:
//! Fabric's verifiers reject high-S signatures (they are malleable), and HSMs seldom normalise.

use crate::SdkError;
use gridledger_identity::SigningIdentity;
use std::sync::Arc;

/// The error a [`Signer`] reports when it cannot sign (the HSM is unreachable, the PIN was
/// refused, …): any error, carried to the caller inside [`SdkError::Signer`].
pub type SignError = Box<dyn std::error::Error + Send + Sync>;

/// A client identity able to sign: an MSP id, its X.509 certificate, and the private key of
/// that certificate, wherever the key is kept.
///
/// Implement it to keep keys in an HSM: [`Signer::sign`] receives the message itself (hash it
/// with SHA-256, or let the device's ECDSA-SHA256 mechanism do it) and returns the ECDSA
/// signature DER-encoded (`SEQUENCE { INTEGER r, INTEGER s }`). A device that returns the raw
/// 64-byte `r || s` form must be converted to DER first, for instance with
/// `gridledger_identity::signature::encode_der_signature`. High-S signatures are fine: the SDK
/// rewrites them to low-S before use.
///
/// The SDK calls `sign` on the async runtime's threads, once per proposal, transaction, commit
/// status request or event request; a signer that blocks for long should be given its own
/// threads by its implementation.
///
/// ```no_run
/// use gridledger_sdk::{SignError, Signer};
///
/// /// A key held by a hardware module (the device calls are the application's own).
/// struct HsmSigner {
///     msp_id: String,
///     cert_pem: Vec<u8>,
///     key_label: String,
/// }
///
/// # fn hsm_sign_sha256_ecdsa(_label: &str, _msg: &[u8]) -> Result<Vec<u8>, SignError> { todo!() }
/// impl Signer for HsmSigner {
///     fn msp_id(&self) -> &str {
///         &self.msp_id
///     }
///     fn cert_pem(&self) -> &[u8] {
///         &self.cert_pem
///     }
///     fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
///         hsm_sign_sha256_ecdsa(&self.key_label, message)
///     }
/// }
/// ```
pub trait Signer: Send + Sync {
    /// The MSP the identity belongs to (`RetailerMSP`).
    fn msp_id(&self) -> &str;

    /// The identity's X.509 certificate, PEM-encoded, exactly as the peers should see it.
    fn cert_pem(&self) -> &[u8];

    /// Signs `message`: ECDSA P-256 over SHA-256(message), DER-encoded.
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError>;

    /// `msp.SerializedIdentity{mspid, id_bytes = certificate PEM}`: the bytes requests carry
    /// as their creator. Derived from [`Signer::msp_id`] and [`Signer::cert_pem`].
    fn serialized_identity(&self) -> Vec<u8> {
        gridledger_identity::serialize_identity(self.msp_id(), self.cert_pem())
    }
}

/// A local certificate and key: signs with `ring`, already in low-S form.
impl Signer for SigningIdentity {
    fn msp_id(&self) -> &str {
        SigningIdentity::msp_id(self)
    }

    fn cert_pem(&self) -> &[u8] {
        SigningIdentity::cert_pem(self)
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        Ok(SigningIdentity::sign(self, message))
    }

    fn serialized_identity(&self) -> Vec<u8> {
        self.serialized().to_vec()
    }
}

/// A shared signer signs as the signer it shares, so `Arc<dyn Signer>` (or `Arc<MySigner>`)
/// can be handed to [`crate::Gateway::connect`] as well as a signer by value.
impl<T: Signer + ?Sized> Signer for Arc<T> {
    fn msp_id(&self) -> &str {
        (**self).msp_id()
    }

    fn cert_pem(&self) -> &[u8] {
        (**self).cert_pem()
    }

    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
        (**self).sign(message)
    }

    fn serialized_identity(&self) -> Vec<u8> {
        (**self).serialized_identity()
    }
}

/// Signs `message` with `signer` and returns the signature in Fabric's form: strict DER, low-S.
/// Fails when the signer fails or returns something that is not a DER ECDSA signature.
pub fn sign_with(signer: &dyn Signer, message: &[u8]) -> Result<Vec<u8>, SdkError> {
    let signature = signer.sign(message).map_err(SdkError::Signer)?;
    gridledger_identity::signature::normalize_low_s(&signature).map_err(SdkError::SignatureFormat)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gridledger_identity::material::{CertificateAuthority, LeafSpec, Seed};
    use gridledger_identity::signature::{parse_der_signature, to_high_s, verify_p256};
    use gridledger_identity::{Certificate, Role};

    fn identity() -> SigningIdentity {
        let seed = Seed::from_text("sdk signer tests");
        let ca =
            CertificateAuthority::new_root(&seed, "RetailerMSP", "ca.retailer", 0, 4_000_000_000)
                .expect("a test CA");
        let user = ca
            .issue(
                "RetailerMSP",
                &LeafSpec::new("User1", Some(Role::Client), 0, 4_000_000_000),
            )
            .expect("a test user");
        SigningIdentity::from_pem(
            "RetailerMSP",
            user.cert_pem.as_bytes(),
            user.key_pem.as_bytes(),
        )
        .expect("the user's signing identity")
    }

    /// A signer standing in for an HSM that returns whatever form its device produced.
    struct Device {
        inner: SigningIdentity,
        high_s: bool,
        broken: bool,
    }

    impl Signer for Device {
        fn msp_id(&self) -> &str {
            "RetailerMSP"
        }
        fn cert_pem(&self) -> &[u8] {
            self.inner.cert_pem()
        }
        fn sign(&self, message: &[u8]) -> Result<Vec<u8>, SignError> {
            if self.broken {
                return Err("the token is not logged in".into());
            }
            let low = self.inner.sign(message);
            Ok(if self.high_s {
                to_high_s(&low).expect("a DER signature")
            } else {
                low
            })
        }
    }

    fn public_key(signer: &dyn Signer) -> Vec<u8> {
        Certificate::from_pem(signer.cert_pem())
            .expect("the test certificate")
            .public_key
    }

    #[test]
    fn high_s_signatures_from_a_device_are_rewritten_to_low_s() {
        let device = Device {
            inner: identity(),
            high_s: true,
            broken: false,
        };
        let raw = device.sign(b"proposal bytes").expect("the device signs");
        assert!(
            !gridledger_identity::signature::is_low_s(&parse_der_signature(&raw).expect("DER").s),
            "the device under test returns high-S signatures"
        );
        let signature = sign_with(&device, b"proposal bytes").expect("signed");
        let s = parse_der_signature(&signature).expect("DER").s;
        assert!(gridledger_identity::signature::is_low_s(&s));
        verify_p256(&public_key(&device), b"proposal bytes", &signature)
            .expect("the normalised signature verifies");
    }

    #[test]
    fn a_failing_or_malformed_signer_is_reported() {
        let device = Device {
            inner: identity(),
            high_s: false,
            broken: true,
        };
        let err = sign_with(&device, b"m").expect_err("the device fails");
        assert!(err.to_string().contains("not logged in"), "{err}");

        struct Raw(SigningIdentity);
        impl Signer for Raw {
            fn msp_id(&self) -> &str {
                "RetailerMSP"
            }
            fn cert_pem(&self) -> &[u8] {
                self.0.cert_pem()
            }
            fn sign(&self, _: &[u8]) -> Result<Vec<u8>, SignError> {
                Ok(vec![7; 64])
            }
        }
        let err = sign_with(&Raw(identity()), b"m").expect_err("raw r||s is not DER");
        assert!(matches!(err, SdkError::SignatureFormat(_)), "{err}");
    }

    #[test]
    fn the_serialized_identity_is_the_one_signing_identity_uses() {
        let id = identity();
        let shared: Arc<dyn Signer> = Arc::new(identity());
        assert_eq!(Signer::serialized_identity(&id), id.serialized());
        assert_eq!(
            shared.serialized_identity(),
            gridledger_identity::serialize_identity("RetailerMSP", shared.cert_pem())
        );
    }
}
