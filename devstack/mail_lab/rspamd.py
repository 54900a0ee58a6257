"""rspamd's configuration for the lab: the stock rules, one proxy worker that is Postfix's milter and scans
by itself, and every module that would reach the network switched off (the lab has no DNS, no internet).

Our own top-level rspamd.conf includes Debian's `common.conf` (rules, modules, their local.d overrides from
LOCAL_CONFDIR = the lab folder) but declares only the proxy worker: no normal, controller or fuzzy worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CONFDIR = Path("/etc/rspamd")
# rspamd compiles a matcher of every public suffix at start: 9,600 of them cost 9-20 s of one core, most of
# the lab's start. The lab's mail names a handful of domains; these cover it and the common real ones.
TLDS = (
    "com net org info biz io co dev app me us uk co.uk de fr es it nl be eu ch at se no dk fi pl pt cz ie ru "
    "cn jp br in au ca mx email online site test example localhost invalid"
).split()

# Modules that query DNS, fetch maps from the internet or need redis: each would log errors or stall.
OFFLINE_DISABLED = (
    "asn",
    "dkim",
    "dkim_signing",
    "arc",
    "dmarc",
    "emails",
    "fuzzy_check",
    "greylist",
    "mid",
    "neural",
    "phishing",
    "ratelimit",
    "rbl",
    "replies",
    "rspamd_update",
    "spf",
    "url_redirector",
    "whitelist",
)


@dataclass(frozen=True)
class RspamdConfig:
    conf_dir: Path  # rspamd.conf and local.d/ (LOCAL_CONFDIR)
    db_dir: Path
    run_dir: Path
    log_dir: Path
    milter_port: int

    @property
    def conf_file(self) -> Path:
        return self.conf_dir / "rspamd.conf"

    @property
    def log_file(self) -> Path:
        return self.log_dir / "rspamd.log"

    def command(self) -> list[str]:
        return [
            "rspamd",
            "--no-fork",
            "--config",
            str(self.conf_file),
            f"--var=LOCAL_CONFDIR={self.conf_dir}",
            f"--var=DBDIR={self.db_dir}",
            f"--var=RUNDIR={self.run_dir}",
            f"--var=LOGDIR={self.log_dir}",
        ]


def files(c: RspamdConfig) -> dict[str, str]:
    """Relative path under conf_dir -> content."""
    out = {
        "rspamd.conf": f"""# Written by devstack.mail_lab.
.include "$CONFDIR/common.conf"
options {{
  pidfile = "$RUNDIR/rspamd.pid";
  .include "$CONFDIR/options.inc"
  .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}}
logging {{
  type = "file";
  filename = "$LOGDIR/rspamd.log";
  .include "$CONFDIR/logging.inc"
}}
worker "rspamd_proxy" {{
  bind_socket = "127.0.0.1:{c.milter_port}";
  milter = yes;
  self_scan = yes;
  timeout = 120s;
  count = 1;
  spam_header = "X-Spam";
  discard_on_reject = false;
  quarantine_on_reject = false;
  reject_message = "Spam message rejected";
  upstream "local" {{
    default = yes;
    self_scan = yes;
  }}
}}
""",
        "local.d/options.inc": """# GTUBE test strings: the standard XJS*C4JDBQADN1... one rejects,
# the YJS*C4JDBQADN1... variant ("add header") lands in Junk.
enable_test_patterns = true;
url_tld = "$LOCAL_CONFDIR/tlds.dat";
# Hyperscan would compile every regexp in the background after each start: seconds of CPU for nothing.
disable_hyperscan = true;
dns {
  nameserver = ["127.0.0.1:53"];
}
""",
        "local.d/milter_headers.conf": """use = ["x-spamd-result", "x-spam-status", "x-spam-level"];
skip_local = false;
skip_authenticated = false;
""",
    }
    out["tlds.dat"] = "".join(f"{tld}\n" for tld in TLDS)
    for module in OFFLINE_DISABLED:
        out[f"local.d/{module}.conf"] = "enabled = false;\n"
    return out
