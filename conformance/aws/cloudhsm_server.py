"""A CloudHSM v2 test server for hsmux's tests: `DescribeClusters` as the CloudHSM v2 API
reference gives it (AWS JSON 1.1, `X-Amz-Target: BaldrApiService.DescribeClusters`), with
clusters whose HSMs the test sets up and whose HSM states it changes. moto's CloudHSMv2 is
too thin for this (clusters without HSMs, timestamps the SDK does not parse).

Answer shape: {"Clusters": [{"ClusterId", "State", "HsmType", "CreateTimestamp" (epoch
seconds, a JSON number as AWS JSON 1.1 writes timestamps), "VpcId", "SubnetMapping",
"SecurityGroup", "BackupPolicy", "Hsms": [{"AvailabilityZone", "ClusterId", "SubnetId",
"EniId", "EniIp", "HsmId", "State", "StateMessage"}], ...}], "NextToken"?}. `Filters`
takes "clusterIds", "vpcIds" and "states".

Clusters are given at start: --cluster <id>=<eni ip>,<eni ip>,... (each HSM ACTIVE).
`POST /__hsms {"cluster": id, "state": "DEGRADED"}` sets the state of that cluster's HSMs;
the faults of awsjson.py apply as well.

Run: python cloudhsm_server.py --port 0 --access-key AKIDTEST --cluster cluster-abc=10.0.0.5
"""

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import awsjson  # noqa: E402
from awsjson import ApiError  # noqa: E402

LOCK = threading.Lock()
CLUSTERS = {}
AZS = ["us-east-1a", "us-east-1b", "us-east-1c"]


def add_cluster(cluster_id, ips):
    hsms = []
    for i, ip in enumerate(ips):
        hsms.append({
            "AvailabilityZone": AZS[i % len(AZS)],
            "ClusterId": cluster_id,
            "SubnetId": f"subnet-{i:08x}",
            "EniId": f"eni-{abs(hash((cluster_id, i))) % (1 << 32):08x}",
            "EniIp": ip,
            "HsmId": f"hsm-{cluster_id[-6:]}{i}",
            "State": "ACTIVE",
            "StateMessage": "HSM created.",
        })
    CLUSTERS[cluster_id] = {
        "BackupPolicy": "DEFAULT",
        "ClusterId": cluster_id,
        "CreateTimestamp": time.time(),
        "Hsms": hsms,
        "HsmType": "hsm1.medium",
        "SecurityGroup": "sg-0123456789abcdef0",
        "State": "ACTIVE",
        "StateMessage": "The cluster is active.",
        "SubnetMapping": {h["AvailabilityZone"]: h["SubnetId"] for h in hsms},
        "VpcId": "vpc-0123456789abcdef0",
        "NetworkType": "IPV4",
        "Certificates": {"ClusterCsr": "", "HsmCertificate": "", "AwsHardwareCertificate": "", "ManufacturerHardwareCertificate": "", "ClusterCertificate": ""},
    }


def describe_clusters(body, state, fault):
    filters = body.get("Filters") or {}
    for k in filters:
        if k not in ("clusterIds", "vpcIds", "states"):
            raise ApiError("CloudHsmInvalidRequestException", f"unknown filter {k}")
    with LOCK:
        out = []
        for c in CLUSTERS.values():
            if "clusterIds" in filters and c["ClusterId"] not in filters["clusterIds"]:
                continue
            if "vpcIds" in filters and c["VpcId"] not in filters["vpcIds"]:
                continue
            if "states" in filters and c["State"] not in filters["states"]:
                continue
            out.append(json.loads(json.dumps(c)))
    if fault and fault["fault"] == "bad-answer":
        return {"Clusters": "not a list"}
    return {"Clusters": out}


def main():
    a = awsjson.args(sys.argv)
    for name, value in a["extra"]:
        if name == "--cluster":
            cid, _, ips = value.partition("=")
            add_cluster(cid, [ip for ip in ips.split(",") if ip])

    def set_hsms(body):
        with LOCK:
            c = CLUSTERS.get(body.get("cluster"))
            if c is None:
                raise ApiError("CloudHsmResourceNotFoundException", "no such cluster")
            for h in c["Hsms"]:
                h["State"] = body.get("state", "ACTIVE")
        return {"ok": True}

    awsjson.serve("BaldrApiService", {"DescribeClusters": describe_clusters}, a["access_keys"], a["port"], {"/__hsms": set_hsms})


if __name__ == "__main__":
    main()
