"""`check` online: the IdP of every issuer, fetched and judged the way the plugin will.

One probe per distinct provider settings (as the plugin shares one Provider per settings):
the discovery document and the JWKS come through `idp.fetch.Fetcher` (same timeout, size
limit, https rule, no redirects), the document through `discovery.validate_metadata` and the
keys through `jwks.KeySet.parse`, so a key the plugin would ignore is reported with the reason
the plugin would log. Then each instance's `signing_algs` is compared with the keys.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from kong_oidc_py.cli.findings import Report, captured_logs
from kong_oidc_py.errors import ProviderError
from kong_oidc_py.idp.discovery import split_issuer, validate_metadata
from kong_oidc_py.idp.fetch import Fetcher
from kong_oidc_py.idp.keyset import ALG_KEY_TYPE, KeySet, log_ignored
from kong_oidc_py.idp.provider import ProviderSettings


def probe_issuers(instances: list[Any], report: Report) -> None:
    groups: dict[ProviderSettings, list[Any]] = {}
    for inst in instances:
        groups.setdefault(ProviderSettings.from_config(inst.config), []).append(inst)
    for settings, members in groups.items():
        _probe(settings, members, report)


def _probe(settings: ProviderSettings, members: list[Any], report: Report) -> None:
    issuer, url = split_issuer(settings.issuer)
    where = f"issuer {issuer}"
    summary: dict[str, Any] = {"issuer": issuer, "discovery_url": url, "reachable": False, "keys": [],
                               "algorithms": [], "used_by": [m.plugin.location for m in members]}
    report.issuers.append(summary)
    fetcher = Fetcher(timeout_ms=settings.timeout_ms, ssl_verify=settings.ssl_verify,
                      allow_insecure=settings.allow_insecure)
    try:
        try:
            doc = fetcher.get_json(url, reason="discovery_failed")
        except ProviderError as err:
            summary["cause"] = err.cause
            report.add("error", "idp_unreachable", where, f"discovery failed ({err.cause}): {err.description}",
                       field="issuer", fix="check the issuer URL, DNS, egress, TLS (ssl_verify) and timeout from the Kong host")
            return
        summary["reachable"] = True
        advertised = doc.get("issuer")
        if advertised != issuer:
            summary["cause"] = "issuer_mismatch"
            shown = advertised[:200] if isinstance(advertised, str) else type(advertised).__name__
            report.add("error", "issuer_mismatch", where,
                       f"the discovery document says issuer {shown!r}: tokens would carry that iss and the plugin "
                       "refuses the document (OIDC Discovery 4.3)", field="issuer",
                       fix=f"set issuer to {shown!r} exactly (scheme, host, port, path and trailing slash)")
            return
        try:
            validate_metadata(doc, issuer, allow_insecure=settings.allow_insecure)
        except ProviderError as err:
            summary["cause"] = err.cause
            report.add("error", "discovery_invalid", where, f"{err.cause}: {err.description}", field="issuer",
                       fix="fix the IdP's metadata or its URLs (https)")
            return
        jwks_uri = doc["jwks_uri"]
        summary["jwks_uri"] = jwks_uri
        if urlsplit(jwks_uri).scheme == "http" and urlsplit(issuer).scheme == "https":
            report.add("warning", "http_jwks_uri", where,
                       f"the https issuer publishes its keys over plain http ({jwks_uri}), accepted only because "
                       "allow_insecure_issuer is set: anyone on the path can substitute the keys",
                       field="allow_insecure_issuer", fix="serve jwks_uri over https and drop allow_insecure_issuer")
        try:
            keys = KeySet.parse(fetcher.get_json(jwks_uri, reason="jwks_failed"))
        except ProviderError as err:
            summary["cause"] = err.cause
            report.add("error", "jwks_unusable", where, f"JWKS {jwks_uri} ({err.cause}): {err.description}",
                       fix="publish at least one RSA (2048+ bits), EC or OKP signing key in the JWKS")
            return
        # The plugin's own wording and levels: keys meant for other uses (use=enc) are info there,
        # so only the warnings become findings.
        with captured_logs() as logs:
            log_ignored(keys.ignored, issuer)
        for _level, message in logs.messages:
            report.add("warning", "jwks_key_ignored", where, message.removeprefix("oidc: "),
                       fix="the plugin ignores this key: tokens signed with it fail as unknown_kid")
        served = sorted(a for a in ALG_KEY_TYPE if any(e.fits(a) for e in keys.entries))
        summary["algorithms"] = served
        summary["keys"] = [{"kid": e.kid, "kty": e.kty, "crv": e.crv, "alg": e.alg} for e in keys.entries]
        _compare_algorithms(doc, served, members, report)
    finally:
        fetcher.close()


def _compare_algorithms(doc: dict, served: list[str], members: list[Any], report: Report) -> None:
    for inst in members:
        cfg, plugin = inst.config, inst.plugin
        wanted = [a for a in cfg.signing_algs if a in ALG_KEY_TYPE]  # HS* keys never come from a JWKS
        usable = [a for a in wanted if a in served]
        if wanted and not usable:
            report.add("error", "no_key_for_algs", plugin.label,
                       f"no key in the JWKS can verify {wanted!r}; its keys serve {served!r}: every token fails",
                       location=plugin.location, field="signing_algs",
                       fix="set signing_algs to the algorithms the IdP signs with")
        elif usable:
            report.add("info", "algorithms", plugin.label, f"JWKS keys verify {usable!r}",
                       location=plugin.location, field="signing_algs")
        if "authorization_code" in cfg.auth_methods:
            id_algs = doc.get("id_token_signing_alg_values_supported")
            if isinstance(id_algs, list) and not set(id_algs) & set(cfg.signing_algs):
                report.add("error", "id_token_algs", plugin.label,
                           f"the IdP signs ID tokens with {id_algs!r}, none of them in signing_algs: every login fails",
                           location=plugin.location, field="signing_algs",
                           fix="add the IdP's ID token algorithm to signing_algs")
