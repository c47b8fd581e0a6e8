"""The automation keys are optional, validated, and never echo a secret pasted in the wrong place."""

from __future__ import annotations

import re

import pytest

from dp_assets.config.loader import PACKAGED, ConfigError, load_config_from, parse_config
from dp_assets_tests.conftest import packaged_text

ARN = "arn:aws:sns:eu-west-2:123456789012:{}"


def parse(extra: str, env: str = "local"):
    text = packaged_text().replace('env = "local"', f'env = "{env}"') + "\n" + extra
    return parse_config(text.encode(), "test.toml")


def test_packaged_config_keeps_working_with_defaults() -> None:
    config = load_config_from(PACKAGED).config
    assert config.processing.retention_days == 7
    assert config.automation.timezone == "UTC" and config.automation.nightly_cron == "0 2 * * *"
    assert config.automation.rewrite_lookback_days == 3
    assert not config.notify.enabled


def test_topics_follow_the_environment() -> None:
    prod = parse(
        f'[notify]\nsns_info_topic_arn = "{ARN.format("info")}"\n'
        f'sns_paging_topic_arn = "{ARN.format("page")}"\n',
        env="prod",
    )
    assert prod.notify.sns_paging_topic_arn == ARN.format("page")
    assert parse(f'[notify]\nsns_topic_arn = "{ARN.format("all")}"\n', env="dev").notify.enabled

    with pytest.raises(ConfigError, match=r"in prod set notify\.sns_info_topic_arn and notify\.sns_paging"):
        parse(f'[notify]\nsns_topic_arn = "{ARN.format("all")}"\n', env="prod")
    with pytest.raises(ConfigError, match="prod needs both"):
        parse(f'[notify]\nsns_info_topic_arn = "{ARN.format("info")}"\n', env="prod")
    with pytest.raises(ConfigError, match=r"env 'dev' uses the one combined topic notify\.sns_topic_arn"):
        parse(f'[notify]\nsns_paging_topic_arn = "{ARN.format("page")}"\n', env="dev")
    with pytest.raises(ConfigError, match=r"notify.sns_topic_arn: .*not an SNS topic ARN"):
        parse('[notify]\nsns_topic_arn = "my-topic"\n')


def test_a_webhook_url_pasted_instead_of_a_variable_name_is_refused_without_echoing_it() -> None:
    secret = "https://hooks.slack.com/services/T000/B000/very-secret-token"
    with pytest.raises(ConfigError) as e:
        parse(f'[notify]\nslack_webhook_env = "{secret}"\n')
    assert "notify.slack_webhook_env" in str(e.value) and "NAME of the environment variable" in str(e.value)
    assert "very-secret-token" not in str(e.value)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (
            '[automation]\ntimezone = "Mars/Olympus"',
            "automation.timezone: .*unknown time zone 'Mars/Olympus'",
        ),
        ('[automation]\nnightly_cron = "0 0 2 * * *"', "automation.nightly_cron: .*five-field cron"),
        ("[automation]\nlookback = 3", "automation.lookback: unknown key"),
        ("retention_days = 0", "processing.retention_days: Input should be greater than or equal to 1"),
    ],
)
def test_automation_mistakes_are_named(extra: str, expected: str) -> None:
    text = packaged_text()
    if extra.startswith("["):
        text += "\n" + extra + "\n"
    else:  # a [processing] key the packaged config sets
        key = extra.split(" = ")[0]
        text = re.sub(rf"(?m)^{key} = .*$", extra, text, count=1)
    with pytest.raises(ConfigError, match=expected):
        parse_config(text.encode(), "test.toml")
