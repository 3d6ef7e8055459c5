//! A CloudHSM cluster as `DescribeClusters` (CloudHSM v2 API) shows it: its HSMs with
//! their id, availability zone, ENI address (`EniIp`, where the client library reaches
//! them) and `State`. Used for the health of a `backend = "cloudhsm"` slot or replica (no
//! ACTIVE HSM = down) and shown by `hsmux check` / `hsmux status`; changes are logged.
//!
//! Every watch registers itself (weakly) so that the CLI can list the clusters of the
//! loaded configuration without the core knowing about CloudHSM.

use super::errors::{self, During};
use super::sdk;
use crate::backend::remote::rt;
use crate::config::CloudHsmConfig;
use crate::core::error::{Error, Result};
use aws_sdk_cloudhsmv2::Client;
use cryptoki_sys::*;
use parking_lot::Mutex;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// One HSM of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hsm {
    pub id: String,
    pub availability_zone: String,
    pub eni_ip: String,
    pub state: String,
}

impl Hsm {
    pub fn active(&self) -> bool {
        self.state == "ACTIVE"
    }
}

/// The cluster behind one slot or replica.
pub struct ClusterWatch {
    /// The slot or replica name (`slot` or `slot/replica`).
    pub name: String,
    pub cluster_id: String,
    target: sdk::Target,
    client: Arc<Mutex<Option<Client>>>,
    /// The HSMs as last seen (changes are logged).
    last: Mutex<Option<Vec<Hsm>>>,
}

static WATCHES: Mutex<Vec<Weak<ClusterWatch>>> = Mutex::new(Vec::new());

/// The clusters of the slots and replicas alive now, in creation order.
pub fn watches() -> Vec<Arc<ClusterWatch>> {
    let mut w = WATCHES.lock();
    w.retain(|x| x.strong_count() > 0);
    w.iter().filter_map(Weak::upgrade).collect()
}

impl ClusterWatch {
    /// Builds nothing and sends nothing: the client is made at the first request.
    pub fn new(name: &str, cfg: &CloudHsmConfig) -> Arc<ClusterWatch> {
        let w = Arc::new(ClusterWatch {
            name: name.to_string(),
            cluster_id: cfg.cluster_id.clone(),
            target: sdk::Target {
                region: cfg.region.clone(),
                endpoint: cfg.endpoint.clone(),
                credentials: cfg.credentials.clone(),
                deadline: Duration::from_millis(cfg.module.timeout_ms),
            },
            client: Arc::new(Mutex::new(None)),
            last: Mutex::new(None),
        });
        WATCHES.lock().push(Arc::downgrade(&w));
        w
    }

    pub fn location(&self) -> String {
        sdk::location("cloudhsmv2", &self.target)
    }

    /// The cluster's HSMs now (`DescribeClusters` filtered by the cluster id; none when
    /// the cluster is not listed).
    pub fn describe(&self) -> Result<Vec<Hsm>> {
        let cell = self.client.clone();
        let target = self.target.clone();
        let id = self.cluster_id.clone();
        let what = format!("{}: DescribeClusters {}", self.name, self.cluster_id);
        let w2 = what.clone();
        let hsms = rt::call(&what, self.target.deadline, async move {
            let c = super::cached_client(&cell, &target, Client::new).await?;
            let out = c
                .describe_clusters()
                .filters("clusterIds", vec![id.clone()])
                .send()
                .await
                .map_err(|e| errors::map(&w2, e, During::Call))?;
            // A cluster the service does not list (deleted, another region) has no HSM.
            let Some(cluster) = out
                .clusters()
                .iter()
                .find(|c| c.cluster_id() == Some(id.as_str()))
            else {
                log::warn!("{w2}: the cluster is not listed");
                return Ok(Vec::new());
            };
            Ok(cluster
                .hsms()
                .iter()
                .map(|h| Hsm {
                    id: h.hsm_id().to_string(),
                    availability_zone: h.availability_zone().unwrap_or("").to_string(),
                    eni_ip: h.eni_ip().unwrap_or("").to_string(),
                    state: h
                        .state()
                        .map(|s| s.as_str().to_string())
                        .unwrap_or_default(),
                })
                .collect::<Vec<Hsm>>())
        })?;
        self.note(&hsms);
        Ok(hsms)
    }

    /// Logs what changed since the last answer.
    fn note(&self, now: &[Hsm]) {
        let mut last = self.last.lock();
        if last.as_deref() == Some(now) {
            return;
        }
        let line = now
            .iter()
            .map(|h| format!("{} {} {} {}", h.id, h.availability_zone, h.eni_ip, h.state))
            .collect::<Vec<_>>()
            .join("; ");
        log::info!(
            "{}: cluster {}: {} HSM(s), {} ACTIVE: {}",
            self.name,
            self.cluster_id,
            now.len(),
            now.iter().filter(|h| h.active()).count(),
            if line.is_empty() { "none".into() } else { line }
        );
        *last = Some(now.to_vec());
    }

    /// The health check: an answer that shows no ACTIVE HSM is `CKR_DEVICE_ERROR` (the
    /// replica is down). An API that cannot be reached is not: the HSMs are reached over
    /// their ENIs, not through the control plane, so the vendor library's own probe
    /// decides then (logged).
    pub fn check(&self) -> Result<()> {
        match self.describe() {
            Ok(hsms) if hsms.iter().any(Hsm::active) => Ok(()),
            Ok(hsms) => Err(Error::logged(
                CKR_DEVICE_ERROR,
                format!(
                    "{}: cluster {} has no ACTIVE HSM ({})",
                    self.name,
                    self.cluster_id,
                    if hsms.is_empty() {
                        "no HSM".to_string()
                    } else {
                        hsms.iter()
                            .map(|h| format!("{} {}", h.id, h.state))
                            .collect::<Vec<_>>()
                            .join(", ")
                    }
                ),
            )),
            Err(e) => {
                log::warn!(
                    "{}: cluster health unknown ({e}); the vendor library's probe decides",
                    self.name
                );
                Ok(())
            }
        }
    }
}
