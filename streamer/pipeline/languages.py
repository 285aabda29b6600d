"""Language codes: the wire protocol's ISO 639-1 codes and the tokens each MT model family uses for them.

Clients and Whisper speak ISO 639-1 (``"en"``, ``"es"``); NLLB-200 names languages with FLORES-200 codes
(``"eng_Latn"``), M2M100 with ``"__en__"`` tokens, and multi-target OPUS-MT (Marian) models with
``">>es<<"`` tokens. Nothing here knows whether a given model actually has a token: the engine checks its
vocabulary.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# Deprecated or alternative codes clients (and Whisper: "jw") still send, mapped to the code used here.
_ALIASES: Mapping[str, str] = MappingProxyType(
    {"iw": "he", "ji": "yi", "in": "id", "jw": "jv", "nb": "no", "mo": "ro"}
)

# ISO 639-1 -> FLORES-200 as used by NLLB-200. Where FLORES splits a macrolanguage, the code is the variety
# NLLB was trained on as "the" language (Standard Arabic, Iranian Persian, Standard Malay, Halh Mongolian...).
NLLB_CODES: Mapping[str, str] = MappingProxyType(
    {
        "af": "afr_Latn", "ak": "aka_Latn", "am": "amh_Ethi", "ar": "arb_Arab", "as": "asm_Beng",
        "ay": "ayr_Latn", "az": "azj_Latn", "ba": "bak_Cyrl", "be": "bel_Cyrl", "bg": "bul_Cyrl",
        "bm": "bam_Latn", "bn": "ben_Beng", "bo": "bod_Tibt", "bs": "bos_Latn", "ca": "cat_Latn",
        "cs": "ces_Latn", "cy": "cym_Latn", "da": "dan_Latn", "de": "deu_Latn", "dz": "dzo_Tibt",
        "ee": "ewe_Latn", "el": "ell_Grek", "en": "eng_Latn", "eo": "epo_Latn", "es": "spa_Latn",
        "et": "est_Latn", "eu": "eus_Latn", "fa": "pes_Arab", "ff": "fuv_Latn", "fi": "fin_Latn",
        "fj": "fij_Latn", "fo": "fao_Latn", "fr": "fra_Latn", "ga": "gle_Latn", "gd": "gla_Latn",
        "gl": "glg_Latn", "gn": "grn_Latn", "gu": "guj_Gujr", "ha": "hau_Latn", "he": "heb_Hebr",
        "hi": "hin_Deva", "hr": "hrv_Latn", "ht": "hat_Latn", "hu": "hun_Latn", "hy": "hye_Armn",
        "id": "ind_Latn", "ig": "ibo_Latn", "is": "isl_Latn", "it": "ita_Latn", "ja": "jpn_Jpan",
        "jv": "jav_Latn", "ka": "kat_Geor", "kg": "kon_Latn", "ki": "kik_Latn", "kk": "kaz_Cyrl",
        "km": "khm_Khmr", "kn": "kan_Knda", "ko": "kor_Hang", "ks": "kas_Arab", "ku": "kmr_Latn",
        "ky": "kir_Cyrl", "lb": "ltz_Latn", "lg": "lug_Latn", "li": "lim_Latn", "ln": "lin_Latn",
        "lo": "lao_Laoo", "lt": "lit_Latn", "lv": "lvs_Latn", "mg": "plt_Latn", "mi": "mri_Latn",
        "mk": "mkd_Cyrl", "ml": "mal_Mlym", "mn": "khk_Cyrl", "mr": "mar_Deva", "ms": "zsm_Latn",
        "mt": "mlt_Latn", "my": "mya_Mymr", "ne": "npi_Deva", "nl": "nld_Latn", "nn": "nno_Latn",
        "no": "nob_Latn", "ny": "nya_Latn", "oc": "oci_Latn", "om": "gaz_Latn", "or": "ory_Orya",
        "pa": "pan_Guru", "pl": "pol_Latn", "ps": "pbt_Arab", "pt": "por_Latn", "qu": "quy_Latn",
        "rn": "run_Latn", "ro": "ron_Latn", "ru": "rus_Cyrl", "rw": "kin_Latn", "sa": "san_Deva",
        "sc": "srd_Latn", "sd": "snd_Arab", "sg": "sag_Latn", "si": "sin_Sinh", "sk": "slk_Latn",
        "sl": "slv_Latn", "sm": "smo_Latn", "sn": "sna_Latn", "so": "som_Latn", "sq": "als_Latn",
        "sr": "srp_Cyrl", "ss": "ssw_Latn", "st": "sot_Latn", "su": "sun_Latn", "sv": "swe_Latn",
        "sw": "swh_Latn", "ta": "tam_Taml", "te": "tel_Telu", "tg": "tgk_Cyrl", "th": "tha_Thai",
        "ti": "tir_Ethi", "tk": "tuk_Latn", "tl": "tgl_Latn", "tn": "tsn_Latn", "tr": "tur_Latn",
        "ts": "tso_Latn", "tt": "tat_Cyrl", "tw": "twi_Latn", "ug": "uig_Arab", "uk": "ukr_Cyrl",
        "ur": "urd_Arab", "uz": "uzn_Latn", "vi": "vie_Latn", "wo": "wol_Latn", "xh": "xho_Latn",
        "yi": "ydd_Hebr", "yo": "yor_Latn", "zh": "zho_Hans", "zu": "zul_Latn",
    }
)  # fmt: skip

# The ISO 639-1 codes among M2M100's 100 languages (its tokens are ``__<code>__``). M2M100 also has a few
# ISO 639-2/3 languages (ast, ceb, ilo, ns) that have no 639-1 code and so cannot be asked for on the wire.
_M2M100_ISO = frozenset(
    (
        "af", "am", "ar", "az", "ba", "be", "bg", "bn", "br", "bs", "ca", "cs", "cy", "da", "de", "el",
        "en", "es", "et", "fa", "ff", "fi", "fr", "fy", "ga", "gd", "gl", "gu", "ha", "he", "hi", "hr",
        "ht", "hu", "hy", "id", "ig", "is", "it", "ja", "jv", "ka", "kk", "km", "kn", "ko", "lb", "lg",
        "ln", "lo", "lt", "lv", "mg", "mk", "ml", "mn", "mr", "ms", "my", "ne", "nl", "no", "oc", "or",
        "pa", "pl", "ps", "pt", "ro", "ru", "sd", "si", "sk", "sl", "so", "sq", "sr", "ss", "su", "sv",
        "sw", "ta", "th", "tl", "tn", "tr", "uk", "ur", "uz", "vi", "wo", "xh", "yi", "yo", "zh", "zu",
    )
)  # fmt: skip
M2M100_CODES: Mapping[str, str] = MappingProxyType({iso: f"__{iso}__" for iso in sorted(_M2M100_ISO)})


def normalize(code: str) -> str:
    """Return the ISO 639-1 code for ``code``: lower case, region dropped (``pt-BR`` -> ``pt``), aliases
    resolved (``iw`` -> ``he``). Unknown codes come back normalized but otherwise unchanged."""
    base = code.strip().replace("_", "-").split("-", 1)[0].lower()
    return _ALIASES.get(base, base)


def nllb_code(code: str) -> str | None:
    """The NLLB-200 (FLORES-200) code for an ISO 639-1 code, or ``None`` when there is none."""
    return NLLB_CODES.get(normalize(code))


def m2m100_code(code: str) -> str | None:
    """The M2M100 language token (``__en__``) for an ISO 639-1 code, or ``None`` when there is none."""
    return M2M100_CODES.get(normalize(code))


def marian_code(code: str) -> str:
    """The target-language token multi-target OPUS-MT models expect at the start of the source."""
    return f">>{normalize(code)}<<"
