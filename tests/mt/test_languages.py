"""ISO 639-1 <-> NLLB-200 / M2M100 / Marian language codes."""

from __future__ import annotations

import re

import pytest

from streamer.pipeline import languages

WIRE_CODES = {
    "en": "eng_Latn", "es": "spa_Latn", "de": "deu_Latn", "fr": "fra_Latn", "zh": "zho_Hans",
    "ja": "jpn_Jpan", "pt": "por_Latn", "it": "ita_Latn", "ru": "rus_Cyrl", "ar": "arb_Arab",
    "hi": "hin_Deva", "ko": "kor_Hang", "nl": "nld_Latn", "pl": "pol_Latn", "tr": "tur_Latn",
    "uk": "ukr_Cyrl", "sv": "swe_Latn", "fa": "pes_Arab", "he": "heb_Hebr", "id": "ind_Latn",
    "vi": "vie_Latn", "th": "tha_Thai", "cs": "ces_Latn", "ro": "ron_Latn", "hu": "hun_Latn",
    "el": "ell_Grek", "da": "dan_Latn", "fi": "fin_Latn", "no": "nob_Latn", "bg": "bul_Cyrl",
    "hr": "hrv_Latn", "sr": "srp_Cyrl", "sk": "slk_Latn", "sl": "slv_Latn", "lt": "lit_Latn",
    "lv": "lvs_Latn", "et": "est_Latn", "ms": "zsm_Latn", "bn": "ben_Beng", "ta": "tam_Taml",
    "ur": "urd_Arab", "sw": "swh_Latn", "ca": "cat_Latn", "tl": "tgl_Latn", "af": "afr_Latn",
}  # fmt: skip


@pytest.mark.parametrize(("iso", "nllb"), sorted(WIRE_CODES.items()))
def test_common_languages_map_to_nllb(iso: str, nllb: str) -> None:
    assert languages.nllb_code(iso) == nllb


@pytest.mark.parametrize("iso", sorted(WIRE_CODES))
def test_common_languages_map_to_m2m100(iso: str) -> None:
    assert languages.m2m100_code(iso) == f"__{iso}__"


def test_tables_are_well_formed() -> None:
    assert len(languages.NLLB_CODES) >= 100
    assert len(languages.M2M100_CODES) >= 90
    assert all(re.fullmatch(r"[a-z]{2}", iso) for iso in languages.NLLB_CODES)
    assert all(re.fullmatch(r"[a-z]{3}_[A-Z][a-z]{3}", code) for code in languages.NLLB_CODES.values())
    assert len(set(languages.NLLB_CODES.values())) == len(languages.NLLB_CODES)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("EN", "en"),
        ("pt-BR", "pt"),
        ("zh_CN", "zh"),
        (" es ", "es"),
        ("iw", "he"),
        ("jw", "jv"),
        ("nb", "no"),
    ],
)
def test_normalize(code: str, expected: str) -> None:
    assert languages.normalize(code) == expected


def test_unknown_codes_have_no_model_token() -> None:
    assert languages.nllb_code("xx") is None
    assert languages.m2m100_code("xx") is None
    assert languages.nllb_code("pt-BR") == "por_Latn"
    assert languages.marian_code("ES") == ">>es<<"
