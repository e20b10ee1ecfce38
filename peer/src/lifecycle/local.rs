//! The peer-local `_lifecycle` functions: `InstallChaincode`, `QueryInstalledChaincode`,
//! `QueryInstalledChaincodes` and `GetInstalledChaincodePackage`. They arrive as signed
//! proposals with an empty channel id (as Fabric's `peer lifecycle chaincode install` sends
//! them) and are answered by this peer alone, from its package store; nothing is ordered.
//!
//! Only an admin of the peer's own organization may call them. The creator is authenticated as
//! for cscc: by the peer's local MSP (`msp_dir`) when it has one, otherwise by the MSP
//! configuration of the channels the peer has joined (such a peer that joined none refuses
//! every call).

use super::package::{Package, PackageStore};
use crate::endorser::{ProposalError, UnpackedProposal};
use crate::node::Peer;
use gridledger_proto::lifecycle as lc;
use gridledger_proto::prost::Message;
use gridledger_proto::protos;
use std::collections::BTreeMap;

impl Peer {
    /// The store of chaincode packages installed on this peer.
    pub fn packages(&self) -> PackageStore {
        PackageStore::new(&self.config().data_dir)
    }

    /// Checks that the proposal's creator is an admin of this peer's organization and signed
    /// the proposal.
    fn check_local_admin(&self, p: &UnpackedProposal) -> Result<(), ProposalError> {
        let identity = self.local_creator(p)?;
        if identity.msp_id() != self.config().msp_id || !identity.is_admin() {
            return Err(ProposalError::AccessDenied(format!(
                "only an admin of {} may manage the chaincodes installed on this peer (the creator is {} of {})",
                self.config().msp_id,
                if identity.is_admin() {
                    "an admin"
                } else {
                    "not an admin"
                },
                identity.msp_id()
            )));
        }
        Ok(())
    }

    /// Runs one peer-local `_lifecycle` function.
    pub fn lifecycle_local(&self, p: &UnpackedProposal) -> Result<protos::Response, ProposalError> {
        self.check_local_admin(p)?;
        let function = p
            .input
            .args
            .first()
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .unwrap_or_default();
        let arg = p.input.args.get(1).map(Vec::as_slice).unwrap_or_default();
        let bad = |e: gridledger_proto::prost::DecodeError| {
            ProposalError::Malformed(format!("cannot decode {function}Args: {e}"))
        };
        let store = self.packages();
        let outcome: Result<Vec<u8>, String> = match function.as_str() {
            "InstallChaincode" => {
                let args = lc::InstallChaincodeArgs::decode(arg).map_err(bad)?;
                store
                    .install(&args.chaincode_install_package)
                    .map(|package| {
                        tracing::info!(package_id = %package.package_id, "chaincode package installed");
                        lc::InstallChaincodeResult {
                            package_id: package.package_id,
                            label: package.label,
                        }
                        .encode_to_vec()
                    })
                    .map_err(|e| format!("chaincode install failed: {e}"))
            }
            "QueryInstalledChaincode" => {
                let args = lc::QueryInstalledChaincodeArgs::decode(arg).map_err(bad)?;
                match store.get(&args.package_id) {
                    Ok(Some(package)) => {
                        let references = self
                            .references(&package)
                            .into_iter()
                            .map(|(channel, chaincodes)| {
                                (
                                    channel,
                                    lc::query_installed_chaincode_result::References {
                                        chaincodes: chaincodes
                                            .into_iter()
                                            .map(|(name, version)| {
                                                lc::query_installed_chaincode_result::Chaincode {
                                                    name,
                                                    version,
                                                }
                                            })
                                            .collect(),
                                    },
                                )
                            })
                            .collect();
                        Ok(lc::QueryInstalledChaincodeResult {
                            package_id: package.package_id,
                            label: package.label,
                            references,
                        }
                        .encode_to_vec())
                    }
                    Ok(None) => Err(format!(
                        "could not find chaincode with package id '{}'",
                        args.package_id
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
            "QueryInstalledChaincodes" => store
                .list()
                .map(|packages| {
                    lc::QueryInstalledChaincodesResult {
                        installed_chaincodes: packages
                            .into_iter()
                            .map(|package| {
                                use lc::query_installed_chaincodes_result as r;
                                let references = self
                                    .references(&package)
                                    .into_iter()
                                    .map(|(channel, chaincodes)| {
                                        (
                                            channel,
                                            r::References {
                                                chaincodes: chaincodes
                                                    .into_iter()
                                                    .map(|(name, version)| r::Chaincode {
                                                        name,
                                                        version,
                                                    })
                                                    .collect(),
                                            },
                                        )
                                    })
                                    .collect();
                                r::InstalledChaincode {
                                    package_id: package.package_id,
                                    label: package.label,
                                    references,
                                }
                            })
                            .collect(),
                    }
                    .encode_to_vec()
                })
                .map_err(|e| e.to_string()),
            "GetInstalledChaincodePackage" => {
                let args = lc::GetInstalledChaincodePackageArgs::decode(arg).map_err(bad)?;
                match store.bytes(&args.package_id) {
                    Ok(Some(bytes)) => Ok(lc::GetInstalledChaincodePackageResult {
                        chaincode_install_package: bytes,
                    }
                    .encode_to_vec()),
                    Ok(None) => Err(format!(
                        "could not find chaincode with package id '{}'",
                        args.package_id
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
            other => Err(format!(
                "{other:?} is not a peer-local _lifecycle function (channel functions need a channel id)"
            )),
        };
        Ok(match outcome {
            Ok(payload) => gridledger_chaincode::success(payload),
            Err(message) => gridledger_chaincode::error(message),
        })
    }

    /// Channel → `(name, version)` of the committed definitions whose approval by this
    /// peer's organization names `package`.
    fn references(&self, package: &Package) -> BTreeMap<String, Vec<(String, String)>> {
        let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for channel in self.channels() {
            for (name, def) in channel.committed_definitions().iter() {
                if self
                    .approved_package(&channel, name, def.sequence)
                    .ok()
                    .flatten()
                    .is_some_and(|id| id == package.package_id)
                {
                    out.entry(channel.id().to_owned())
                        .or_default()
                        .push((name.clone(), def.version.clone()));
                }
            }
        }
        out
    }
}
