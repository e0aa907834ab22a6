"""The enterprise topic map ferry runs when the config says nothing else (the documents' company).

Receivers write the raw topics; a log parser group forks security events to the SIEM topics and
sends every log record to log_commit; writers store the commit topics, the SIEM writer into siem_events.
"""

from __future__ import annotations

from typing import Any

# OS and hardware security events (auth facilities, sshd, sudo, su, login, PAM, the Windows Security channel).
SIEM_OS = (
    "facility:auth OR facility:authpriv OR app:sshd OR app:sshd* OR app:sudo OR app:sudo* OR app:su "
    'OR app:"su(pam_unix)" OR app:login OR app:login* OR app:systemd-logind OR app:pam* OR app:unix_chkpwd '
    # display managers and cron log their PAM sessions under `NAME(pam_unix)`
    'OR app:"gdm(pam_unix)" OR app:"kdm(pam_unix)" OR app:"xdm(pam_unix)" OR app:"lightdm(pam_unix)" '
    'OR app:"cron(pam_unix)" OR app:"CRON(pam_unix)" OR app:"sshd(pam_unix)" OR winlog.channel:Security'
)
# Application security events, as OTel logs mark them (event.domain / event.category).
SIEM_APP = (
    "event.domain:security OR event.category:authentication OR event.category:iam OR event.category:security "
    "OR event.category:intrusion_detection"
)

TOPICS: dict[str, dict[str, Any]] = {
    # raw topics, filled by receivers (linux and windows get their receivers in a later issue)
    "logging": {"signal": "logs", "about": "OTLP logs and the HTTP/API wrapper"},
    "syslog": {"signal": "logs", "about": "syslog lines (UDP, TCP)"},
    "linux": {"signal": "logs", "about": "the systemd journal"},
    "windows": {"signal": "logs", "about": "the Windows Event Log"},
    "tracing": {"signal": "traces", "about": "OTLP spans"},
    "metrics": {"signal": "metrics", "about": "OTLP metrics"},
    # normalised topics, filled by parsers
    "log_commit": {"signal": "logs", "about": "every log record, normalised"},
    "log_replicate": {"signal": "logs", "about": "log records exported from another site"},
    "siemapp_commit": {"signal": "logs", "about": "application security events"},
    "siemos_commit": {"signal": "logs", "about": "OS and hardware security events"},
    "metrics_commit": {"signal": "metrics", "about": "metric points, normalised"},
    "trace_commit": {"signal": "traces", "about": "spans, normalised"},
}

STAGES: dict[str, dict[str, Any]] = {
    "log_parser": {
        "kind": "parser",
        "inputs": ["logging", "syslog", "linux", "windows"],
        "outputs": ["log_commit", "siemapp_commit", "siemos_commit"],
        "routes": [
            {"name": "siem_os", "when": SIEM_OS, "to": ["siemos_commit"], "continue": True},
            {"name": "siem_app", "when": SIEM_APP, "to": ["siemapp_commit"], "continue": True},
        ],
        "default": "log_commit",
    },
    "metrics_parser": {"kind": "parser", "inputs": ["metrics"], "outputs": ["metrics_commit"]},
    "trace_parser": {"kind": "parser", "inputs": ["tracing"], "outputs": ["trace_commit"]},
    # RED metrics and the service graph from every span (before any sampling), as delta metric points.
    "spanmetrics": {"kind": "spanmetrics", "inputs": ["tracing"], "outputs": ["metrics_commit"]},
    "writer": {"kind": "writer", "inputs": ["log_commit", "log_replicate", "metrics_commit", "trace_commit"]},
    "siem_writer": {"kind": "writer", "inputs": ["siemapp_commit", "siemos_commit"], "table": "siem_events"},
}
