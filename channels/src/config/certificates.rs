//! The certificates a channel configuration carries, with their expiry: every MSP's root and
//! intermediate CAs, TLS root and intermediate CAs and admin certificates, and the Raft
//! consenters' TLS certificates. Nodes publish these as metrics and warn before one expires
//! (an expired CA in a channel config silently invalidates every identity it issued).

use gridledger_identity::Certificate;
use gridledger_proto::{common, msp};
use prost::Message;

use super::{APPLICATION_GROUP, MSP_KEY, ORDERER_GROUP, view::ChannelConfig};

/// One certificate found in a channel configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelCertificate {
    /// The MSP whose definition holds it (empty for a consenter's certificate).
    pub msp_id: String,
    /// What it is there for: `ca`, `intermediate_ca`, `tls_ca`, `tls_intermediate_ca`,
    /// `admin`, `consenter_client_tls` or `consenter_server_tls`.
    pub role: &'static str,
    /// Subject distinguished name (a consenter's: its `host:port` too).
    pub subject: String,
    /// End of the validity window, unix seconds.
    pub not_after: i64,
}

impl ChannelConfig {
    /// Every certificate of the configuration, in config order (the orderer organizations,
    /// then the application organizations, then the consenters). Certificates that do not
    /// parse are skipped: the configuration was validated when it was loaded, and this list
    /// is for monitoring.
    pub fn certificates(&self) -> Vec<ChannelCertificate> {
        let mut out = Vec::new();
        if let Some(root) = &self.config().channel_group {
            for section in [ORDERER_GROUP, APPLICATION_GROUP] {
                let Some(group) = root.groups.get(section) else {
                    continue;
                };
                for org in group.groups.values() {
                    msp_certificates(org, &mut out);
                }
            }
        }
        for consenter in &self.orderer().consenters {
            let address = format!("{}:{}", consenter.host, consenter.port);
            for (role, pem) in [
                ("consenter_client_tls", &consenter.client_tls_cert),
                ("consenter_server_tls", &consenter.server_tls_cert),
            ] {
                if let Ok(cert) = Certificate::from_pem(pem) {
                    out.push(ChannelCertificate {
                        msp_id: String::new(),
                        role,
                        subject: format!("{} ({address})", cert.subject),
                        not_after: cert.not_after,
                    });
                }
            }
        }
        out
    }
}

/// The certificates of an organization group's `MSP` value.
fn msp_certificates(org: &common::ConfigGroup, out: &mut Vec<ChannelCertificate>) {
    let Some(value) = org.values.get(MSP_KEY) else {
        return;
    };
    let Ok(config) = msp::MspConfig::decode(value.value.as_slice()) else {
        return;
    };
    let Ok(fabric) = msp::FabricMspConfig::decode(config.config.as_slice()) else {
        return;
    };
    for (role, pems) in [
        ("ca", &fabric.root_certs),
        ("intermediate_ca", &fabric.intermediate_certs),
        ("tls_ca", &fabric.tls_root_certs),
        ("tls_intermediate_ca", &fabric.tls_intermediate_certs),
        ("admin", &fabric.admins),
    ] {
        for pem in pems {
            if let Ok(cert) = Certificate::from_pem(pem) {
                out.push(ChannelCertificate {
                    msp_id: fabric.name.clone(),
                    role,
                    subject: cert.subject,
                    not_after: cert.not_after,
                });
            }
        }
    }
}
