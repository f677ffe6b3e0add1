"""No password or token of a SinkUrl reaches a log line, --dumpprops or the rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from probepair.config.redact import has_credentials, redact_credentials

CASES = [
    ("postgresql://probepair:s3cret@db:5432/alerts?sslmode=verify-full",
     "postgresql://probepair:***@db:5432/alerts?sslmode=verify-full"),
    ("postgresql://db/alerts?user=pp&password=s3cret&sslpassword=k3y",
     "postgresql://db/alerts?user=pp&password=***&sslpassword=***"),
    ("host=db user=pp password=s3cret sslpassword='k 3y' dbname=alerts",
     "host=db user=pp password=*** sslpassword=*** dbname=alerts"),
    ("host=db password = \"s3 cret\" dbname=alerts", "host=db password = *** dbname=alerts"),
    ("https://user:s3cret@collector.example.net/alerts?token=abc",
     "https://user:***@collector.example.net/alerts?token=***"),
    ("nats://s3cretToken@10.0.0.21:4222,nats://u:pw@10.0.0.22:4222",
     "nats://***@10.0.0.21:4222,nats://u:***@10.0.0.22:4222"),
    ("http://alertmanager:9093", "http://alertmanager:9093"),
    ("https://user@collector/alerts", "https://user@collector/alerts"),  # a name, no secret
]


@pytest.mark.parametrize(("url", "shown"), CASES)
def test_credentials_are_masked_and_the_server_stays_readable(url: str, shown: str) -> None:
    assert redact_credentials(url) == shown
    assert has_credentials(url) == (url != shown)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc"),
                                     blacklist_characters="@&?#/'\";,:"), max_size=40))
def test_a_password_of_any_text_never_survives(text: str) -> None:
    # A marker no URL below holds otherwise; no ':' (in a userinfo it splits user:password)
    password = "Zq" + text
    for url in (f"postgresql://u:{password}@db/x", f"postgresql://db/x?password={password}",
                f"host=db password={password} dbname=x", f"nats://{password}@h:4222"):
        assert password not in redact_credentials(url), url


def test_dumpprops_and_the_rules_never_show_a_sink_password() -> None:
    from probepair.config import props

    url = "postgresql://probepair:s3cret@db:5432/alerts?sslmode=verify-full"
    p = props.load([("t.props", {"SinkType": "postgres", "SinkUrl": url})])
    dump = props.dumpprops(p)
    assert "s3cret" not in dump
    line = next(x for x in dump.splitlines() if x.startswith("SinkUrl:"))
    assert line.startswith("SinkUrl: '<redacted>'") and "probepair:***@db:5432" in line
    # the dump loads back over the original: the URL stays the original's
    assert props.load([("t.props", {"SinkUrl": url}), ("dump", {"SinkUrl": "<redacted>"})]) \
        .SinkUrl == url
    assert props.as_mapping(p)["SinkUrl"] == redact_credentials(url)
    assert url in props.dumpprops(p, show_secrets=True)
    # a URL without credentials is shown as it is
    plain = props.load([("t.props", {"SinkUrl": "http://am:9093"})])
    assert "SinkUrl: 'http://am:9093'" in props.dumpprops(plain)


def test_sink_names_in_logs_carry_no_password() -> None:
    from probepair.config import props
    from probepair.sinks import make_sink

    for kind, url in (("http", "https://u:s3cret@collector/alerts"),
                      ("alertmanager", "http://u:s3cret@am:9093"),
                      ("postgres", "postgresql://pp:s3cret@db/alerts")):
        sink = make_sink(props.load([("t", {"SinkType": kind, "SinkUrl": url})]))
        assert "s3cret" not in sink.name and "***" in sink.name, sink.name
