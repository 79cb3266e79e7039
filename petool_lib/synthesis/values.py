"""Parameter values for generated calls: what value a parameter of an API gets, and how an instruction names it.

:func:`_choose` draws one parameter's value, in this order of preference:

1. **documented values** (:func:`_doc_values`): the ``default`` when it is a real value (not a placeholder such as
   ``string``, ``your_api_key``, ``<id>``, the parameter's own name or a type annotation; a numeric value is refused
   for textual kinds such as a city or a search term) and the examples quoted in the description ("e.g. 'London'",
   "Example: 2023-01-01", "such as `AAPL`"). When there is one, it is used :data:`DOC_SHARE` of the time (the
   official ground truths use the default about 60% of the time); otherwise the value comes from the next steps, so
   that a model must read it from the instruction;
2. **listed options** (:func:`_options`): the values the description enumerates ("One of the following: HK|AU|SG",
   "metric or imperial", "(Rotate180FlipNone, Rotate180FlipX, ...)", an ``ENUM`` split on ``|`` or ``,``; two at
   least). A parameter that lists options only ever gets one of them or a documented value;
3. **a realistic generator** (:func:`_generate`) for the parameter's kind (:func:`_kind`), read from its name, then
   from the start of its description and its type; a bare ``from``/``to``/``source``/``target`` takes its kind from
   what the API does (:func:`_context_kind`: currency, airport, language or date). Generators draw cities, ISO
   country/language codes and locales, currency codes, tickers, coins, airports, URLs, e-mails, dates in the
   documented format, years, lat/lon, ids shaped like the domain's ids (Spotify, YouTube, IMDb, ASIN, ISBN, UUID,
   small demo ids), page/limit/offset numbers, file paths with the file type the API works on, and search keywords,
   names and categories for the API's topic (:class:`_Ctx`, detected from its category, tool description,
   description and name). An id whose documented value has digits gets a new id of the same shape (:func:`_like`).

Every value is coerced to the declared type (:func:`_coerce`: NUMBER -> int/float, BOOLEAN -> bool, anything else ->
a non-empty string); a value that cannot be coerced is dropped. A generated value is kept only when it has the same
coarse shape (:func:`_shape`: number, e-mail, URL, date, path, code, text, ...) as the documented one (an id stays
numeric; lat/lon, dates and years are exempt); otherwise the documented value is used.

Paired values are drawn together (:class:`_Ctx` shares choices across one instruction's parameters): lat and lon
(and a geopoint) come from the same city as a city parameter, and are documented or generated together; the two
ends of a range (from/to, start/end, min/max of dates, currencies, airports, languages, years, amounts, counts) are
both documented or both generated, with two different currencies/airports/languages, an end date after the start
date and a start year before the end year.

A parameter that matches nothing gets its documented value or a **neutral** value (:func:`_neutral`): a small number,
a boolean, or a string derived from its own name (``widgetMode`` -> ``my-widget-mode``), never a value of another
kind (kinds are read from the name first: a ``storageName`` gets a storage name, never a user name).

Optional parameters are stated only when a documented value, an option or a specific generator exists, and then
:data:`OPTIONAL_SHARE` of the time (the caller, ``instructions.template_instruction``, keeps at most
``MAX_OPTIONAL`` of them). **Secrets** (API keys, tokens, sessions, cookies, callbacks, signatures, cursors...) are
never filled as optional parameters: a user never states them (a required one gets its documented value or a
random token).

:func:`param_label` names a parameter without the provider's parameter name ("number of results", "city",
"tournament ID"); :func:`_values_for` lists a parameter's candidate values in order of preference.

Randomness comes only from the ``random.Random`` the caller passes (or, in :func:`_pool_for`, one seeded by the
parameter itself), so values are deterministic for a seed and do not depend on ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import datetime as dt
import html
import json
import random
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

from .catalog import Api
from .grouping import humanize


# --------------------------------------------------------------------------------------------------------------
# Value pools

COUNTRY_NAMES = {
    "US": "the US", "GB": "the UK", "UK": "the UK", "FR": "France", "DE": "Germany", "JP": "Japan", "IN": "India",
    "BR": "Brazil", "CA": "Canada", "AU": "Australia", "ES": "Spain", "IT": "Italy", "MX": "Mexico",
    "NL": "the Netherlands", "SG": "Singapore", "KR": "South Korea", "SE": "Sweden", "CH": "Switzerland",
    "ZA": "South Africa", "AE": "the UAE", "NG": "Nigeria", "HK": "Hong Kong", "TW": "Taiwan", "TH": "Thailand",
    "MY": "Malaysia", "PH": "the Philippines", "ID": "Indonesia", "NZ": "New Zealand", "BN": "Brunei", "CN": "China",
    "RU": "Russia", "PT": "Portugal", "IE": "Ireland", "BE": "Belgium", "AT": "Austria", "PL": "Poland",
    "TR": "Turkey", "EG": "Egypt", "KE": "Kenya", "AR": "Argentina", "CO": "Colombia", "CL": "Chile", "NO": "Norway",
    "DK": "Denmark", "FI": "Finland", "SA": "Saudi Arabia", "IL": "Israel", "VN": "Vietnam", "PK": "Pakistan",
    "MA": "Morocco", "BD": "Bangladesh", "PE": "Peru", "GR": "Greece", "CZ": "the Czech Republic", "HU": "Hungary",
    "RO": "Romania", "UA": "Ukraine", "TZ": "Tanzania", "GH": "Ghana", "QA": "Qatar", "LU": "Luxembourg",
    "USA": "the USA", "GBR": "the UK", "FRA": "France", "DEU": "Germany", "CAN": "Canada", "AUS": "Australia"}
LANGUAGE_NAMES = {
    "en": "English", "es": "Spanish", "fr": "French", "de": "German", "it": "Italian", "ja": "Japanese",
    "pt": "Portuguese", "zh": "Chinese", "ko": "Korean", "ar": "Arabic", "ru": "Russian", "nl": "Dutch", "hi": "Hindi",
    "tr": "Turkish", "sv": "Swedish", "pl": "Polish", "id": "Indonesian", "th": "Thai", "vi": "Vietnamese",
    "el": "Greek", "he": "Hebrew", "uk": "Ukrainian", "ms": "Malay", "zh-hans": "Simplified Chinese"}
_CITIES = [("Paris", 48.8566, 2.3522), ("Tokyo", 35.6762, 139.6503), ("Berlin", 52.52, 13.405),
           ("Lisbon", 38.7223, -9.1393), ("Toronto", 43.6532, -79.3832), ("Sydney", -33.8688, 151.2093),
           ("New York", 40.7128, -74.006), ("Barcelona", 41.3874, 2.1686), ("Chicago", 41.8781, -87.6298),
           ("Amsterdam", 52.3676, 4.9041), ("Seoul", 37.5665, 126.978), ("Cape Town", -33.9249, 18.4241),
           ("Dublin", 53.3498, -6.2603), ("Singapore", 1.3521, 103.8198), ("Mexico City", 19.4326, -99.1332)]
CITIES = [c[0] for c in _CITIES]
_COUNTRY_CODES = ["US", "GB", "FR", "DE", "JP", "IN", "BR", "CA", "AU", "ES", "IT", "MX"]
_COUNTRIES = ["France", "Japan", "Brazil", "Canada", "Germany", "Kenya", "Australia", "Spain", "India", "Mexico"]
_LANGS = ["en", "es", "fr", "de", "it", "ja", "pt", "zh"]
_LOCALES = ["en-US", "fr-FR", "de-DE", "es-ES", "ja-JP", "pt-BR", "en-GB"]
_CURRENCIES = ["USD", "EUR", "GBP", "JPY", "CHF", "CAD", "AUD", "INR"]
_TICKERS = ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN", "GOOGL", "META", "NFLX"]
_COINS = ["BTC", "ETH", "SOL", "ADA", "DOGE"]
_COIN_IDS = ["bitcoin", "ethereum", "solana", "cardano"]
_AIRPORTS = ["JFK", "LHR", "CDG", "NRT", "SFO", "MAD", "DXB", "SIN", "FRA", "LAX"]
_FLIGHTS = ["BA117", "LH400", "AF1234", "DL405", "UA901", "EK202"]
_EMAILS = ["anna.smith@example.com", "j.doe@mail.example.org", "support@acme.io", "mike.chen@example.net",
           "laura.b@example.co.uk"]
_DOMAINS = ["example.com", "acme.io", "github.com", "wikipedia.org", "shopify.com", "bbc.co.uk"]
_URLS = ["https://www.example.com/blog/electric-cars", "https://en.wikipedia.org/wiki/Solar_energy",
         "https://www.bbc.com/news/technology", "https://github.com/psf/requests",
         "https://www.nytimes.com/2024/05/01/science/space.html"]
_IMAGE_URLS = ["https://images.example.com/photos/golden-retriever.jpg", "https://cdn.example.org/img/street-paris.png",
               "https://example.com/uploads/receipt-0423.jpg"]
_VIDEO_URLS = ["https://www.youtube.com/watch?v=dQw4w9WgXcQ", "https://www.youtube.com/watch?v=9bZkp7q19f0",
               "https://www.tiktok.com/@natgeo/video/7234567890123456789"]
_PRODUCT_URLS = ["https://www.amazon.com/dp/B08N5WRWNW", "https://www.ebay.com/itm/394857203948",
                 "https://www.walmart.com/ip/5129836741"]
_IPS = ["8.8.8.8", "203.0.113.42", "185.199.108.153", "1.1.1.1", "72.229.28.185"]
_PHONES = ["+14155552671", "+447700900123", "+33612345678", "+12125550143", "+4915112345678"]
USERNAMES = ["john_doe", "alice.w", "mkrause88", "sara_lee", "dev_tom"]
_PASSWORDS = ["S3cure!pass", "hunter2024", "Tr0ub4dor&3"]
_STORAGES = ["MyStorage", "First Storage", "backup-storage", "archive-storage"]
_FILE_PATHS = ["/Documents/report.pdf", "/images/logo.png", "/folder/invoice_2024.docx", "/data/sales.xlsx"]
_FILE_NAMES = ["report.pdf", "invoice_2024.docx", "photo.jpg", "sales.xlsx", "notes.txt"]
_FOLDERS = ["/Documents/reports", "/images", "/projects/2024", "/backup"]
_PEOPLE = ["Emma Watson", "Lionel Messi", "Barack Obama", "Taylor Swift", "Serena Williams"]
_FIRST = ["Emma", "Liam", "Sofia", "Noah", "Amara"]
_LAST = ["Garcia", "Smith", "Mueller", "Tanaka", "Okafor"]
_COMPANIES = ["Apple", "Tesla", "Spotify", "Nike", "Airbnb", "Microsoft"]
_TEAMS = ["Real Madrid", "Los Angeles Lakers", "Manchester United", "Chicago Bulls", "Bayern Munich"]
_PRODUCTS = ["iPhone 15 Pro", "Nike Air Max 90", "Kindle Paperwhite", "Sony WH-1000XM5", "Instant Pot Duo"]
_TEXTS = ["I really enjoyed the concert last night!", "The delivery was late and the box was damaged.",
          "The new update made the app much faster.", "Bonjour, je voudrais réserver une table pour deux.",
          "Can you recommend a good book for the weekend?", "El servicio fue excelente y la comida deliciosa."]
_SUBJECTS = ["Meeting tomorrow at 10", "Your order has shipped", "Weekly report", "Invoice for March"]
_TIMEZONES = ["Europe/Paris", "America/New_York", "Asia/Tokyo", "Australia/Sydney"]
_ZIPS = ["10001", "94105", "60614", "SW1A 1AA", "75008"]
_ADDRESSES = ["1600 Amphitheatre Parkway, Mountain View, CA", "221B Baker Street, London",
              "350 5th Ave, New York, NY", "Champ de Mars, 75007 Paris"]
_STATES = ["CA", "NY", "TX", "FL", "WA"]
_SORT_FIELDS = ["price", "date", "relevance", "popularity", "rating"]
_FORMATS = ["json", "csv", "xml"]
_STATUSES = ["active", "pending", "completed", "available"]
# Search keywords, names and categories for the API's topic (detected from its category and descriptions).
# (topic, cues, keywords, names, categories)
_TOPICS: list[tuple[str, tuple[str, ...], list[str], list[str], list[str]]] = [
    ("music", ("music", "song", "songs", "track", "tracks", "artist", "album", "spotify", "lyrics", "playlist", "radio"),
     ["Bohemian Rhapsody", "lo-fi beats", "Daft Punk", "jazz classics", "Adele"],
     ["Taylor Swift", "Daft Punk", "Adele", "Miles Davis"], ["jazz", "rock", "hip-hop", "classical", "pop"]),
    ("movies", ("movie", "movies", "film", "films", "tv", "series", "netflix", "anime", "imdb", "streaming", "episode",
                "subtitle", "subtitles"),
     ["Breaking Bad", "Inception", "Stranger Things", "The Office", "Interstellar"],
     ["Inception", "The Office", "Breaking Bad"], ["comedy", "drama", "thriller", "documentary", "horror"]),
    ("sports", ("sport", "sports", "football", "soccer", "basketball", "nba", "cricket", "tennis", "hockey", "league",
                "match", "matches", "team", "player", "tournament", "golf", "handball", "baseball"),
     ["Real Madrid", "Lakers", "Lionel Messi", "Wimbledon", "Champions League"], _TEAMS,
     ["football", "basketball", "tennis", "cricket"]),
    ("finance", ("stock", "stocks", "finance", "financial", "market", "crypto", "trading", "invest", "bank", "forex",
                 "exchange", "shares"),
     ["Apple", "Tesla", "S&P 500", "Bitcoin", "Microsoft"], _COMPANIES, ["technology", "energy", "healthcare"]),
    ("shopping", ("product", "products", "shop", "store", "ecommerce", "commerce", "amazon", "cart", "brand", "sephora",
                  "order", "orders", "shopping"),
     ["wireless earbuds", "running shoes", "coffee maker", "yoga mat", "mechanical keyboard"], _PRODUCTS,
     ["electronics", "books", "home & kitchen", "toys", "beauty"]),
    ("food", ("food", "recipe", "recipes", "restaurant", "meal", "menu", "cook", "ingredient", "nutrition", "drink",
              "cocktail"),
     ["vegan lasagna", "chicken curry", "sushi", "gluten-free bread", "margarita"], ["Chicken Tikka Masala", "Pad Thai"],
     ["vegetarian", "dessert", "breakfast", "italian"]),
    ("realestate", ("property", "properties", "realty", "rent", "house", "apartment", "listing", "listings", "estate"),
     ["London", "2-bedroom flat", "Manchester", "garden flat", "Sydney"], ["Kensington", "Brooklyn Heights"],
     ["apartment", "house", "studio"]),
    ("travel", ("hotel", "hotels", "flight", "flights", "travel", "trip", "airport", "booking", "tour", "destination"),
     ["Barcelona", "beach resorts", "Tokyo", "Lisbon city center"], ["Hotel Arts Barcelona", "The Ritz London"],
     ["hotel", "hostel", "resort"]),
    ("jobs", ("job", "jobs", "career", "hiring", "salary", "resume", "employment"),
     ["data scientist", "nurse", "remote software engineer", "marketing manager"], ["Acme Corp", "Globex"],
     ["engineering", "healthcare", "marketing"]),
    ("code", ("github", "repo", "repos", "repository", "code", "developer", "programming", "npm", "package"),
     ["web scraping", "machine learning", "react", "rails", "data visualization"], ["awesome-project", "data-pipeline"],
     ["python", "javascript", "devops"]),
    ("books", ("book", "books", "novel", "author", "library", "isbn"),
     ["Dune", "Pride and Prejudice", "science fiction", "Stephen King"], ["Stephen King", "Jane Austen"],
     ["fiction", "history", "science"]),
    ("social", ("twitter", "tweet", "tweets", "instagram", "tiktok", "reddit", "social", "youtube", "video", "videos",
                "channel", "posts"),
     ["cooking tutorials", "travel vlog", "funny cats", "python tutorial"], ["natgeo", "nasa"],
     ["technology", "gaming", "travel"]),
    ("news", ("news", "article", "articles", "headline", "headlines", "media", "blog"),
     ["electric cars", "climate change", "artificial intelligence", "space exploration"], ["Reuters", "BBC News"],
     ["technology", "business", "science", "health"]),
    ("maps", ("map", "maps", "geocode", "geocoding", "boundary", "boundaries", "address", "place", "places", "location",
              "postal", "zip", "route"),
     ["coffee shops", "Eiffel Tower", "museums", "pharmacy"], CITIES[:6], ["restaurant", "museum", "park"]),
]
_DEFAULT_TOPIC = ("general", (),
                  ["climate change", "machine learning", "electric cars", "healthy recipes", "travel tips"],
                  ["Project Atlas", "Summer Campaign"], ["technology", "science", "health", "business"])
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
           "November", "December"]


# --------------------------------------------------------------------------------------------------------------
# Reading a parameter's documentation

_SPLIT = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_INT = re.compile(r"^[+-]?\d+$")
_FLOAT = re.compile(r"^[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?$")
_PLACEHOLDER = re.compile(r"^((string|str|number|integer|int|boolean|float)( or (string|number|integer|boolean))?|"
                          r"none|null|nil|undefined|nan|n/a|x+|\.+|value|default|your\b.*|your_.*|"
                          r"<.*>|\{\{.*\}\}|\$\{.*\}|api[ _-]?key|apikey|token|required|optional)$", re.I)
_EX_MARK = re.compile(r"(\be\.\s?g\b\.?|\beg\b\.?|\bfor (?:example|instance)\b|\b(?:test )?examples?(?: values?)?\s*:|"
                      r"\bexample\b|\bex\s*:|\bsuch as\b|\bi\.e\.)\s*[:,]?\s*", re.I)
_STRONG_MARK = re.compile(r"e\.?\s?g|example|ex\b", re.I)
_QUOTED = re.compile(r"""^[\s*_\-]*(?:\*?`([^`]{1,80})`|'([^'\n]{1,80})'|"([^"\n]{1,80})"|\\+"([^"\\]{1,80})\\+")""")
_BARE = re.compile(r"^[\s*\-]*([^\s,;()\[\]{}*`'\"]+(?:,[^\s,;()\[\]{}*`'\"]+)*)")
_CAPS = re.compile(r"^[\s*\-]*([A-Z0-9][\w'.\-]*(?: [A-Z0-9][\w'.\-]*){1,4})(?=\s*(?:$|[,.;)]|\s[a-z]))")
_STOP = {"the", "a", "an", "when", "if", "to", "you", "this", "that", "it", "in", "on", "for", "of", "and", "or", "with",
         "by", "is", "are", "be", "from", "as", "all", "any", "some", "each", "more", "other", "which", "what", "where",
         "there", "these", "those", "its", "your", "we", "can", "use", "using", "see", "like", "etc", "not", "only"}


@dataclass(frozen=True)
class _Spec:
    """What the value and phrasing rules read of one parameter."""

    name: str
    tokens: tuple[str, ...]
    desc: str  # lower case
    raw_desc: str
    ptype: str  # STRING | NUMBER | BOOLEAN | ENUM | DATE | GEOPOINT | ARRAY | OBJECT | BINARY
    default: Any

    @property
    def head(self) -> str:
        return self.tokens[-1] if self.tokens else ""

    @property
    def joined(self) -> str:
        return "".join(self.tokens)

    def has(self, *words: str) -> bool:
        return any(w in self.tokens for w in words)


def _tokens(name: str) -> tuple[str, ...]:
    return tuple(t for t in re.split(r"[^a-z0-9]+", _SPLIT.sub(" ", str(name)).lower()) if t)


def _ptype(param: dict[str, Any]) -> str:
    t = str(param.get("type") or "STRING").strip().upper()
    if t.startswith("DATE"):
        return "DATE"
    if t.startswith("GEOPOINT"):
        return "GEOPOINT"
    if t in ("NUMBER", "INTEGER", "INT", "FLOAT", "DOUBLE", "LONG", "NUMERIC"):
        return "NUMBER"
    if t in ("BOOLEAN", "BOOL"):
        return "BOOLEAN"
    if t in ("ENUM", "ARRAY", "OBJECT", "BINARY"):
        return t
    return "STRING"


def _spec(param: dict[str, Any]) -> _Spec:
    raw = " ".join(html.unescape(str(param.get("description") or "")).split())
    return _Spec(str(param.get("name", "")), _tokens(str(param.get("name", ""))), raw.lower(), raw, _ptype(param),
                 param.get("default"))


_BOOLS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _coerce(value: Any, ptype: str) -> Any:
    """``value`` as the declared type (NUMBER -> int/float, BOOLEAN -> bool, else a non-empty str); None if it
    cannot be one."""
    if value is None:
        return None
    if ptype == "NUMBER":
        if isinstance(value, bool):
            return None
        if isinstance(value, (int, float)):
            return value if value == value else None
        s = str(value).strip()
        if _INT.match(s):
            return int(s)
        if _FLOAT.match(s):
            return float(s)
        return None
    if ptype == "BOOLEAN":
        if isinstance(value, bool):
            return value
        return _BOOLS.get(str(value).strip().lower())
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    if isinstance(value, str):
        return value.strip() or None
    return None


def _doc_values(spec: _Spec) -> list[Any]:
    """The values the documentation gives: the default (when real) and the examples quoted in the description."""
    out: list[Any] = []
    textual = _kind(spec) in ("search", "text", "name", "city", "country", "language", "subject", "username", "email",
                              "url", "domain", "address")

    def add(v: Any) -> None:
        if isinstance(v, str):
            v = v.strip()
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"`":
                v = v[1:-1]
            if _PLACEHOLDER.match(v) or len(v) > 120 or not re.search(r"\w", v) or \
                    re.fullmatch(r"\[\s*\w*\s*\]", v) or _tokens(v) == spec.tokens or re.search(r"&\w+=", v) or \
                    re.match(r"(?i)(integer|string|number|date|boolean|float|array)\s*\[", v):
                return
            if textual and _shape(v) == "num":
                return
        c = _coerce(v, spec.ptype)
        if c is not None and c not in out:
            out.append(c)

    add(spec.default)
    if spec.ptype != "BOOLEAN":
        for m in _EX_MARK.finditer(spec.raw_desc):
            rest = spec.raw_desc[m.end():]
            q = _QUOTED.match(rest)
            if q:
                v = next(g for g in q.groups() if g is not None).strip()
            else:
                b = _CAPS.match(rest) if _CAPS.match(rest) and " " in _CAPS.match(rest).group(1) else _BARE.match(rest)
                if not b:
                    continue
                v = b.group(1).rstrip(".:")
                strong = _STRONG_MARK.search(m.group(1)) is not None
                looks = bool(re.search(r"[0-9A-Z/.@:_\-]", v))
                if v.lower() in _STOP or not (strong or looks):
                    continue
            if "=" in v:
                v = v.split("=", 1)[1]
            v = v.strip().strip(".")
            if v and "..." not in v and v.lower() not in _STOP and not v.startswith("."):
                add(v)
    return out


_OPT_TOKEN = r"[\w.+/\-]+(?: [\w.+/\-]+)?"


def _options(spec: _Spec) -> list[Any]:
    """The values the description enumerates (``a|b|c``, "One of the following: a, b", `` `a` `b` ``, "a or b")."""
    if spec.ptype == "BOOLEAN":
        return []
    d = spec.raw_desc
    found: list[str] = []
    runs = re.findall(rf"{_OPT_TOKEN}(?:\s*\|\s*{_OPT_TOKEN})+", d)
    if runs:
        found = [o for o in max(runs, key=len).split("|")]
    if not found:
        m = re.search(r"\b(?:one of(?: the following| these)?(?: values)?|options|"
                      r"(?:accepted|possible|allowed|valid) values|supports|enum|list of)\s*[:\-]?\s*(.+)", d, re.I)
        if m:
            rest = re.split(r"(?<=\w)\.\s", m.group(1))[0].rstrip(".")
            if re.search(r",|\s-\s|\sor\s", rest):
                found = re.split(r",\s*|\s+-\s+|\s+or\s+|^-\s*", rest)
            else:
                found = rest.split()
    if not found:  # "RotateFlip method (Rotate180FlipNone, Rotate180FlipX, ...)"
        m = re.search(r"\(([\w.-]+(?:,\s*[\w.-]+){2,})[,.\s]*\)", d)
        if m:
            found = re.split(r",\s*", m.group(1))
    if not found and spec.ptype == "STRING" and re.match(r"(a )?boolean\b|true or false", spec.desc):
        found = ["true", "false"]
    if not found and re.search(r"(possible|acceptable|allowed|valid|available|supported)\s+(values|options)|\bex\b",
                               d, re.I):
        found = re.findall(r"`([^`]{1,30})`", d)
    if not found and 0 < len(d.split()) <= 6 and " or " in d:  # "metric or imperial" (only the values)
        parts = [x.strip() for x in re.split(r",\s*|\s+or\s+", d.rstrip("."))]
        if all(re.fullmatch(r"[a-z0-9_\-]+|[A-Z0-9_]{2,6}", x) for x in parts):
            found = parts
    if not found:
        codes = re.findall(r"\((\w{2,5})\)", d)
        if len(codes) >= 2 and spec.ptype in ("ENUM", "STRING") and len(codes) * 4 >= len(d.split()):
            found = codes
    if not found and spec.ptype == "ENUM":
        found = re.split(r"\||,", d)
    out: list[Any] = []
    for o in found:
        o = re.sub(r"\s*\([^)]*\)", "", o).strip().strip("`'\"*").strip()
        if not o or len(o) > 30 or len(o.split()) > 3 or o.lower() in _STOP or "default" in o.lower() or \
                _PLACEHOLDER.match(o) or o.endswith(":"):
            continue
        c = _coerce(o, spec.ptype)
        if c is not None and c not in out:
            out.append(c)
    return out if len(out) >= 2 else []


# --------------------------------------------------------------------------------------------------------------
# What a parameter is (its kind), and realistic generators per kind


@dataclass
class _Ctx:
    """The API a value is drawn for (its topic) and the choices shared by one instruction's parameters (lat/lon of
    one city, two different currencies/languages/airports for from/to, an end date after the start date)."""

    text: str = ""
    shared: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, api: Api | None) -> "_Ctx":
        if api is None:
            return cls()
        return cls(" ".join([api.category.replace("_", " "), api.tool_description, api.description,
                             humanize(api.name)]).lower(),
                   {"api_name": humanize(api.name), "api_text": _api_text(api)})

    @property
    def words(self) -> set[str]:
        return set(re.split(r"[^a-z0-9]+", self.text))

    def topic(self) -> tuple[str, tuple[str, ...], list[str], list[str], list[str]]:
        words = self.words
        best, score = _DEFAULT_TOPIC, 0
        for t in _TOPICS:
            s = sum(c in words for c in t[1])
            if s > score:
                best, score = t, s
        return best

    def pick(self, key: str, rng: random.Random, pool: Sequence[Any]) -> Any:
        if key not in self.shared:
            self.shared[key] = rng.randrange(len(pool))
        return pool[self.shared[key] % len(pool)]

    def pick_pair(self, key: str, rng: random.Random, pool: Sequence[Any], second: bool) -> Any:
        """Two different items of ``pool`` for the two ends of a pair (from/to)."""
        if key not in self.shared:
            self.shared[key] = rng.sample(range(len(pool)), 2)
        return pool[self.shared[key][1 if second else 0]]


_START = {"from", "start", "since", "begin", "checkin", "after", "min", "minimum", "source", "src", "origin",
          "departure", "dep", "base", "sl", "startdate", "datefrom", "fromdate", "greater", "gt", "gte", "above", "over",
          "lower"}
_END = {"to", "end", "until", "till", "checkout", "before", "max", "maximum", "target", "dest", "destination", "arrival",
        "arr", "tl", "enddate", "dateto", "todate", "less", "lt", "lte", "below", "under", "upper"}


def _direction(spec: _Spec) -> str:
    toks = set(spec.tokens)
    if spec.joined in ("checkin", "checkindate") or {"check", "in"} <= toks:
        return "start"
    if spec.joined in ("checkout", "checkoutdate") or {"check", "out"} <= toks:
        return "end"
    if toks & _START:
        return "start"
    if toks & _END:
        return "end"
    return ""


_ID_HEADS = {"id", "ids", "uuid", "guid", "slug", "asin", "isbn", "tconst", "sku", "hash", "uid", "imdbid"}
_LIMIT = {"limit", "count", "size", "perpage", "pagesize", "maxresults", "num", "top", "rows", "take", "results",
          "per", "max", "cnt"}
_COUNT_NOUNS = {"bedroom", "bedrooms", "rooms", "room", "beds", "bed", "bathroom", "bathrooms", "baths", "bath",
                "adults", "adult", "guests", "children", "kids", "people", "persons", "passengers", "seats", "quantity",
                "qty", "floor", "floors", "stars", "rating", "nights"}
_SECRET = {"key", "apikey", "token", "secret", "session", "cookie", "callback", "jsonp", "creds", "proxy", "signature",
           "checksum", "auth", "authorization", "access", "bearer", "socket", "nonce", "cursor"}


_DESC_KINDS = (("email", r"\be-?mail\b|\brecipient\b"), ("url", r"\burl\b|\blink\b"), ("domain", r"\bdomain\b"),
               ("city", r"\bcity\b|\btown\b"), ("country", r"\bcountry\b"), ("language", r"\blanguage\b"),
               ("currency", r"\bcurrency\b"), ("symbol", r"\bticker\b|\bstock symbol\b"), ("days", r"number of days"),
               ("date", r"\bdate\b|yyyy|\btimestamp\b"), ("year", r"\byear\b"),
               ("text", r"\btext\b|\bsentence\b|\bmessage\b"),
               ("format", r"\bformat\b"), ("search", r"\bsearch\b|\bquery\b|\bkeywords?\b"))


def _desc_kind(desc: str, words: int = 5) -> str:
    """The kind the start of a description names ('City name' -> city), '' if none."""
    head = " ".join(desc.split()[:words])
    return next((kind for kind, pat in _DESC_KINDS if re.search(pat, head)), "")


def _kind(spec: _Spec) -> str:
    """A parameter's kind from its name (then, for generic names, its description and type); '' when none fits."""
    t, head, j, d, pt = set(spec.tokens), spec.head, spec.joined, spec.desc, spec.ptype
    if pt == "BOOLEAN":
        return "bool"
    if j in ("q", "s", "query", "term", "input", "value", "search", "keyword", "to", "from", "target", "source",
             "convert"):
        k = _desc_kind(d)
        if k and not (k == "search" and j not in ("q", "s", "query", "term", "search", "keyword")):
            return k
    if (j in ("username", "user", "login", "screenname", "handle", "author", "owner", "nickname") or head == "username"
            or ("user" in t and head in ("name", "handle", "login")) or j.endswith("username")):
        return "id" if re.search(r"\bid\b|identifier", d) or pt == "NUMBER" else "username"
    if head in ("password", "pass", "pwd", "passwd"):
        return "password"
    if "email" in t or head in ("mail", "emails") or j in ("recipient", "sender") or (
            head == "address" and re.search(r"\be-?mail\b", d)):
        return "email"
    if head in ("lat", "latitude") or j in ("lat", "latitude"):
        return "lat"
    if head in ("lon", "lng", "long", "longitude") or j in ("lon", "lng", "longitude"):
        return "lon"
    if pt == "GEOPOINT" or j in ("latlng", "latlon", "coordinates", "coords", "northeast", "southwest"):
        return "geopoint"
    if head in ("url", "uri", "link", "href", "website", "permalink", "urls") or "url" in t:
        return "url"
    if head in ("domain", "hostname", "host", "domains"):
        return "domain"
    if head == "ip" or j in ("ipaddress", "ipaddr"):
        return "ip"
    if t & {"phone", "mobile", "msisdn", "tel", "telephone", "whatsapp"}:
        return "phone"
    if head in ("barcode", "ean", "upc", "gtin") or re.match(r"(bar ?code|ean|upc)\b", d):
        return "barcode"
    if head in _ID_HEADS or (head.endswith("id") and len(head) > 3 and head not in ("paid", "valid", "android", "grid")):
        return "id"
    if "storage" in t:
        return "storage"
    if t & {"currency", "currencies"} or j in ("basecode", "basecurrency") or (
            j in ("base", "quote", "from", "to", "source", "target", "symbols", "have", "want") and "currenc" in d):
        return "currency"
    if t & {"coin", "crypto", "cryptocurrency", "coins"}:
        return "coin"
    if t & {"symbol", "symbols", "ticker", "tickers", "stock"}:
        return "symbol"
    if t & {"iata", "airport", "airports"} or (
            (_direction(spec) or head == "code") and re.search(r"airport|\biata\b", d)):
        return "airport"
    if "flight" in t and head in ("flight", "number", "no", "code", "num", "iata"):
        return "flight"
    if t & {"lang", "language", "languages", "locale", "hl", "lg"} or (
            j in ("target", "source", "to", "from", "tl", "sl") and "language" in d):
        return "language"
    if t & {"country", "countries", "nation", "gl", "market"} or (head == "region" and "country" in d):
        return "country"
    if t & {"city", "cities", "town", "location", "loc", "place", "destination", "where", "near"}:
        return "city"
    if t & {"address", "street"}:
        return "address"
    if t & {"zip", "zipcode", "postal", "postcode", "pincode", "postalcode"}:
        return "zip"
    if j in ("state", "statecode", "province"):
        return "state"
    if t & {"timezone", "tz"}:
        return "timezone"
    if pt == "DATE" or t & {"date", "dates", "checkin", "checkout", "dob", "birthday", "birthdate", "datetime",
                            "since", "until"} or head in ("time", "timestamp", "ts") or \
            (j in ("from", "to", "start", "end", "before", "after") and re.search(r"date|time|yyyy|timestamp", d)):
        return "date"
    if t & {"year", "years", "yr"} or (j == "y" and "year" in d) or (head == "season" and pt == "NUMBER"):
        return "year"
    if "month" in t:
        return "month"
    if head in ("interval", "resolution", "granularity", "timeframe", "frequency") and pt != "NUMBER":
        return "interval"
    if "iata" in j and "airline" in j:
        return "airline"
    if "iata" in j:
        return "airport"
    if re.search(r"(date|datetime)$", j) and len(j) > 4:
        return "date"
    if head in ("page", "pageno", "pagenumber", "pagenum", "pg") or j in ("page", "pagenumber", "pageno") or \
            (j == "number" and "page" in d):
        return "page"
    if t & _LIMIT and re.search(r"number of days|\bdays\b", d):
        return "days"
    if pt in ("NUMBER", "STRING") and (t & _LIMIT or j in ("perpage", "pagesize", "maxresults")) and \
            not (pt == "STRING" and not re.search(r"number|count|amount|limit|items|results|max", d + " " + j)) and \
            not t & {"price", "amount", "salary", "budget"}:
        return "limit"
    if t & {"offset", "skip"} or (j in ("start", "from", "startindex") and pt == "NUMBER"):
        return "offset"
    if head in ("path", "filepath", "srcpath", "destpath", "file", "files"):
        return "path"
    if head in ("filename", "fname") or (head == "name" and (t & {"file", "document", "doc"} or (
            len(t) == 1 and re.search(r"\bfile(name)?\b|\bdocument\b", d)))):
        return "filename"
    if head == "name" and len(t) == 1 and re.search(r"\bstorage\b", d):
        return "storage"
    if head in ("folder", "dir", "directory", "foldername", "dirname") or (head == "name" and t & {"folder", "dir"}):
        return "folder"
    if head in ("name", "title", "names", "fullname", "firstname", "lastname", "surname") or j in ("first", "last"):
        return "name"
    if head in ("text", "message", "msg", "body", "content", "sentence", "comment", "review", "prompt", "input",
                "paragraph", "caption", "tweet", "texts", "description", "summary"):
        return "text"
    if t & {"subject", "headline"}:
        return "subject"
    if j in ("q", "s") and re.search(r"\btext\b|sentence|message", d) and not re.search(r"search|query", d):
        return "text"
    if j in ("q", "s", "search", "query") and (re.search(r"\bdomain\b", d) or re.fullmatch(
            r"[a-z0-9-]+(\.[a-z0-9-]+)*\.(com|org|net|io|co|de|uk|fr)", str(spec.default or ""))):
        return "domain"
    if j in ("q", "s", "kw", "search", "searchvalue", "searchterm", "searchquery") or t & {
            "query", "keyword", "keywords", "term", "terms", "phrase"} or head == "search":
        return "search"
    if t & {"genre", "genres", "category", "categories", "cat", "tag", "tags", "topic", "topics", "interest", "niche",
            "industry"}:
        return "category"
    if t & {"sort", "sortby", "orderby", "sortfield"} and not t & {"order", "direction", "dir"}:
        return "sort"
    if t & {"order", "direction", "dir", "sortorder", "sortdir"} and (re.search(r"\basc|\bdesc", d) or "sort" in t or
                                                                        j in ("order", "direction", "dir")):
        return "order"
    if t & {"format", "fmt", "output"}:
        return "format"
    if t & {"unit", "units", "measurement"}:
        return "units"
    if t & {"color", "colour"}:
        return "color"
    if t & {"gender", "sex"}:
        return "gender"
    if t & {"status"}:
        return "status"
    if t & {"price", "amount", "budget", "salary", "cost", "fee"}:
        return "money"
    if t & _COUNT_NOUNS:
        return "count"
    if t & {"radius", "distance", "km", "miles"}:
        return "radius"
    if "age" in t:
        return "age"
    if t & {"days", "hours", "weeks", "duration", "period"}:
        return "days"
    if t & {"zoom", "resolution", "level", "depth", "precision", "index"} and pt == "NUMBER":
        return "level"
    if head in ("round", "week", "episode", "chapter", "volume", "verse", "step", "matchday", "gameweek", "stage",
                "season", "number", "no", "num", "edition", "part") or (head.endswith("number") and len(head) > 6):
        return "ordinal"
    if t & _SECRET:
        return "secret"
    # nothing in the name: read the start of the description (the whole of it for generic names)
    if len(j) <= 3 or head in ("value", "param", "input", "string", "data", "item", "v", "code", "type", "key"):
        return _desc_kind(d, 40)
    return _desc_kind(d, 4)


def _entity(spec: _Spec) -> str:
    """What an id/name parameter names (``tournamentId`` -> 'tournament'), '' for a bare ``id``."""
    last = spec.head
    keep = spec.tokens if last not in _ID_HEADS and not last.endswith("id") else spec.tokens[:-1]
    toks = [t for t in keep if t not in ("get", "the", "by", "api", "src", "dest")]
    if not toks and spec.head.endswith("id") and len(spec.head) > 3 and spec.head not in _ID_HEADS:
        toks = [spec.head[:-2]]
    return " ".join(toks)


def _rand_alnum(rng: random.Random, n: int, alphabet: str) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


_B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _gen_id(spec: _Spec, ctx: _Ctx, rng: random.Random) -> Any:
    """An id shaped like the domain's ids (Spotify/YouTube/IMDb/ASIN/ISBN/UUID, small demo ids, numeric ids)."""
    ent = _entity(spec)
    words = ctx.words | set(ent.split())
    if spec.head == "uuid" or spec.head == "guid" or "uuid" in spec.desc:
        h = "%032x" % rng.getrandbits(128)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
    if spec.head == "asin" or "asin" in spec.desc:
        return "B0" + _rand_alnum(rng, 8, "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ")
    if spec.head == "isbn" or "isbn" in spec.desc:
        return "978" + _rand_alnum(rng, 10, "0123456789")
    if spec.head in ("tconst", "imdbid") or "imdb" in words:
        return "tt" + _rand_alnum(rng, 7, "0123456789")
    if spec.head == "slug":
        if "chain" in words:
            return rng.choice(["ethereum", "polygon", "arbitrum", "bsc"])
        return re.sub(r"[^a-z0-9]+", "-", rng.choice(ctx.topic()[3] + ctx.topic()[2]).lower()).strip("-")
    if spec.ptype == "NUMBER":
        if words & {"pet", "order", "post", "comment", "todo", "category", "tag", "item", "cart", "sport", "bot",
                    "client", "store"} or "demo" in ctx.text:
            return rng.randint(1, 20)
        if words & {"tournament", "league", "season", "competition", "stage"}:
            return rng.randint(1, 500)
        return rng.randint(10_000, 9_999_999)
    if words & {"spotify", "track", "artist", "album", "playlist", "episode", "podcast"} and "music" in ctx.text:
        return _rand_alnum(rng, 22, _B62)
    if words & {"youtube", "video"} and "video" in (ent + " " + spec.desc + " " + ctx.text):
        return _rand_alnum(rng, 11, _B62 + "_-")
    if words & {"coin", "crypto"}:
        return rng.choice(_COIN_IDS)
    if rng.random() < 0.6:
        return str(rng.randint(10_000, 99_999_999))
    return _rand_alnum(rng, 8, "0123456789abcdef")


def _date_format(spec: _Spec) -> str:
    d = spec.desc + " " + spec.raw_desc
    dflt = str(spec.default or "").strip()
    if re.fullmatch(r"\d{10}|\d{13}", dflt):
        return "epoch"
    m = re.fullmatch(r"(\d{1,2})([/.-])(\d{1,2})\2\d{4}", dflt)
    if m:
        first_day = int(m.group(1)) > 12 or int(m.group(3)) <= 12
        return ("%d{0}%m{0}%Y" if first_day else "%m{0}%d{0}%Y").format(m.group(2))
    for pat, fmt in ((r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}", "%Y-%m-%dT%H:%M:%S"),
                     (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}", "%Y-%m-%dT%H:%M"),
                     (r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", "%Y-%m-%d %H:%M:%S"), (r"\d{4}-\d{2}-\d{2}", "%Y-%m-%d"),
                     (r"\d{8}", "%Y%m%d"), (r"\d{4}/\d{2}/\d{2}", "%Y/%m/%d"), (r"\d{4}-\d{2}", "%Y-%m")):
        if re.fullmatch(pat, dflt):
            return fmt
    if re.search(r"unix|epoch|timestamp|milliseconds|seconds since", d) or spec.head in ("timestamp", "ts"):
        return "epoch"
    if re.search(r"yyyy-mm-dd'?t'?hh|iso ?8601|datetime|date-time", d, re.I) or "datetime" in spec.tokens:
        return "%Y-%m-%dT%H:%M"
    for pat, fmt in ((r"dd/mm/yyyy", "%d/%m/%Y"), (r"mm/dd/yyyy", "%m/%d/%Y"), (r"dd-mm-yyyy", "%d-%m-%Y"),
                     (r"mm-dd-yyyy", "%m-%d-%Y"), (r"yyyy/mm/dd", "%Y/%m/%d"), (r"yyyymmdd", "%Y%m%d"),
                     (r"dd\.mm\.yyyy", "%d.%m.%Y")):
        if re.search(pat, d, re.I):
            return fmt
    if spec.head == "time" and "date" not in spec.tokens:
        return "%H:%M"
    return "%Y-%m-%d"


def _gen_date(spec: _Spec, ctx: _Ctx, rng: random.Random) -> Any:
    if "base_date" not in ctx.shared:
        ctx.shared["base_date"] = dt.datetime(2024, 1, 1, 9, 0) + dt.timedelta(days=rng.randrange(700),
                                                                               hours=rng.randrange(10))
    when = ctx.shared["base_date"]
    direction = _direction(spec)
    if direction == "end":
        when = when + dt.timedelta(days=ctx.shared.setdefault("span_days", rng.choice([2, 3, 5, 7, 14, 30])))
    if {"dob", "birthday", "birthdate"} & set(spec.tokens):
        when = dt.datetime(1975 + rng.randrange(30), 1 + rng.randrange(12), 1 + rng.randrange(28))
    fmt = _date_format(spec)
    if fmt == "epoch":
        return int(when.replace(tzinfo=dt.timezone.utc).timestamp())
    return when.strftime(fmt)


def _gen_number(kind: str, spec: _Spec, ctx: _Ctx, rng: random.Random) -> Any:
    direction = _direction(spec)
    if kind == "page":
        return rng.choice([1, 1, 2, 3])
    if kind == "ordinal":
        return rng.randint(1, 12)
    if kind == "limit":
        return rng.choice([5, 10, 20, 25, 50])
    if kind == "offset":
        return rng.choice([0, 0, 10, 20, 50])
    if kind == "year":
        base = ctx.shared.setdefault("year", rng.randint(2015, 2024))
        return base - 3 if direction == "start" and spec.has("start", "from", "min") else base
    if kind == "month":
        return rng.randint(1, 12)
    if kind == "money":
        big = ctx.topic()[0] in ("realestate",) or "salary" in spec.tokens
        lo, hi = ([100_000, 200_000, 250_000], [400_000, 600_000, 900_000]) if big else ([10, 20, 50], [100, 200, 500])
        return rng.choice(lo if direction == "start" else hi)
    if kind == "count":
        lo = 2 if direction == "end" else 1
        return rng.randint(lo, lo + 2) if not spec.has("rating", "stars") else rng.choice([3, 4, 5])
    if kind == "radius":
        return rng.choice([1, 5, 10, 25])
    if kind == "age":
        return rng.choice([18, 25, 32, 45, 60])
    if kind == "days":
        return rng.choice([1, 3, 5, 7])
    if kind == "level":
        return rng.choice([8, 10, 12, 13]) if spec.has("zoom", "resolution") else rng.choice([1, 2, 3])
    return rng.choice([1, 2, 3, 5, 10])


def _gen_name(spec: _Spec, ctx: _Ctx, rng: random.Random) -> Any:
    t, d = set(spec.tokens), spec.desc
    topic = ctx.topic()
    if t & {"first", "firstname", "given"}:
        return rng.choice(_FIRST)
    if t & {"last", "lastname", "surname", "family"}:
        return rng.choice(_LAST)
    mods = t - {"name", "title", "names", "full", "display"}
    if mods & {"city", "town"} or (not mods and re.search(r"\bcity\b", d + " " + ctx.text)):
        return rng.choice(CITIES)
    if mods & {"country"} or (not mods and re.search(r"\bcountry\b", d)):
        return rng.choice(_COUNTRIES)
    if mods & {"team", "club"}:
        return rng.choice(_TEAMS)
    if mods & {"company", "business", "organization", "org", "brand", "store", "shop", "merchant"}:
        return rng.choice(_COMPANIES)
    if mods & {"player", "artist", "person", "author", "singer", "actor", "driver", "customer", "contact", "full",
               "given", "owner", "from", "sender", "recipient", "user", "display"} or \
            re.search(r"\b(person|people|player|artist)\b", d):
        return rng.choice(topic[3] if topic[0] in ("music",) else _PEOPLE)
    if mods & {"product", "item"}:
        return rng.choice(_PRODUCTS)
    if mods & {"song", "track", "album", "movie", "film", "show", "book", "series", "game"} or \
            (not mods and topic[0] in ("music", "movies", "books", "sports", "shopping", "finance", "food", "maps")):
        return rng.choice(topic[3])
    if mods:
        return "my-" + "-".join(sorted(mods, key=spec.tokens.index))  # neutral, derived from the name
    return rng.choice(topic[3])


def _generate(kind: str, spec: _Spec, ctx: _Ctx, rng: random.Random) -> Any:
    """A realistic raw value of ``kind`` (coerced to the declared type by the caller)."""
    direction = _direction(spec)
    topic = ctx.topic()
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "username":
        return rng.choice(USERNAMES)
    if kind == "password":
        return rng.choice(_PASSWORDS)
    if kind == "email":
        return rng.choice(_EMAILS)
    if kind in ("lat", "lon"):
        city = ctx.pick("city", rng, _CITIES)
        return city[1] if kind == "lat" else city[2]
    if kind == "geopoint":
        city = ctx.pick("city", rng, _CITIES)
        return f"{city[1]},{city[2]}"
    if kind == "url":
        words = ctx.words | set(spec.tokens)
        if words & {"image", "photo", "picture", "img", "logo"}:
            return rng.choice(_IMAGE_URLS)
        if words & {"video", "youtube", "tiktok"}:
            return rng.choice(_VIDEO_URLS)
        if topic[0] == "shopping":
            return rng.choice(_PRODUCT_URLS)
        return rng.choice(_URLS)
    if kind == "domain":
        return rng.choice(_DOMAINS)
    if kind == "ip":
        return rng.choice(_IPS)
    if kind == "phone":
        return rng.choice(_PHONES)
    if kind == "id":
        return _gen_id(spec, ctx, rng)
    if kind == "storage":
        return rng.choice(_STORAGES)
    if kind == "currency":
        return ctx.pick_pair("currency", rng, _CURRENCIES, direction == "end") if direction else rng.choice(_CURRENCIES)
    if kind == "coin":
        return rng.choice(_COIN_IDS if spec.has("id", "slug", "name") else _COINS)
    if kind == "symbol":
        api_text = str(ctx.shared.get("api_text", ctx.text))
        return rng.choice(_COINS if re.search(r"crypto|coin", api_text) else _TICKERS)
    if kind == "airport":
        return ctx.pick_pair("airport", rng, _AIRPORTS, direction == "end") if direction else rng.choice(_AIRPORTS)
    if kind == "flight":
        return rng.choice(_FLIGHTS)
    if kind == "airline":
        return rng.choice(["BA", "LH", "AF", "DL", "UA", "EK"])
    if kind == "barcode":
        return "".join(rng.choice("0123456789") for _ in range(12))
    if kind == "interval":
        style = str(spec.default or "")
        if re.fullmatch(r"\d+min", style):
            return rng.choice(["1min", "5min", "15min", "30min", "1h", "1day"])
        if re.fullmatch(r"\d+[mhdw]", style):
            return rng.choice(["1m", "5m", "15m", "1h", "4h", "1d"])
        return rng.choice(["1h", "1day", "1week"] if not re.search(r"daily|weekly", spec.desc) else ["daily", "weekly"])
    if kind == "language":
        pool = _LOCALES if ("locale" in spec.tokens or re.search(r"[a-z]{2}-[A-Z]{2}", spec.raw_desc)) else _LANGS
        return ctx.pick_pair("language", rng, pool, direction == "end") if direction else rng.choice(pool)
    if kind == "country":
        if "name" in spec.tokens or "country name" in spec.desc or "full name" in spec.desc:
            return rng.choice(_COUNTRIES)
        return rng.choice(_COUNTRY_CODES)
    if kind == "city":
        return ctx.pick("city", rng, CITIES)
    if kind == "address":
        return rng.choice(_ADDRESSES)
    if kind == "zip":
        return rng.choice(_ZIPS)
    if kind == "state":
        return rng.choice(_STATES)
    if kind == "timezone":
        return rng.choice(_TIMEZONES)
    if kind == "date":
        return _gen_date(spec, ctx, rng)
    if kind in ("year", "month", "page", "limit", "offset", "money", "count", "radius", "age", "days", "level",
                "ordinal"):
        v = _gen_number(kind, spec, ctx, rng)
        if kind == "month" and spec.ptype != "NUMBER":
            return f"{ctx.shared.get('year', 2024)}-{v:02d}"
        return v
    if kind in ("path", "filename"):
        ext = _file_ext(spec, ctx)
        if kind == "path" and (spec.has("folder", "dir", "directory") or re.search(r"\bfolder path\b", spec.desc)):
            return rng.choice(_FOLDERS)
        if kind == "path" and re.search(r"\b(url|http|web ?page|site)\b", spec.desc):
            return rng.choice(["/news/technology", "/blog/", "/signup/", "/pricing"])
        v = rng.choice(_FILE_PATHS if kind == "path" else _FILE_NAMES)
        return re.sub(r"\.\w+$", "." + ext, v) if ext else v
    if kind == "folder":
        return rng.choice(_FOLDERS)
    if kind == "name":
        return _gen_name(spec, ctx, rng)
    if kind == "text":
        return rng.choice(_TEXTS)
    if kind == "subject":
        return rng.choice(_SUBJECTS)
    if kind == "search":
        return rng.choice(topic[2])
    if kind == "category":
        return rng.choice(topic[4])
    if kind == "sort":
        return rng.choice(_SORT_FIELDS)
    if kind == "order":
        return rng.choice(["asc", "desc"])
    if kind == "format":
        if re.search(r"subtitle|srt|lrc", spec.desc + " " + ctx.text):
            return rng.choice(["srt", "vtt"])
        if re.search(r"image|png|jpg", spec.desc + " " + ctx.text):
            return rng.choice(["png", "jpg"])
        return rng.choice(_FORMATS)
    if kind == "units":
        return rng.choice(["metric", "imperial"])
    if kind == "color":
        return rng.choice(["red", "blue", "black", "green"])
    if kind == "gender":
        return rng.choice(["male", "female"])
    if kind == "status":
        return rng.choice(_STATUSES)
    if kind == "secret":
        if spec.has("callback", "jsonp"):
            return "handleResponse"
        return _rand_alnum(rng, 24, "0123456789abcdef")
    return None


_EXTS = ("pdf", "epub", "docx", "doc", "xlsx", "xls", "csv", "pptx", "png", "jpg", "jpeg", "svg", "html", "txt", "vsdx",
         "mpp", "msg", "eml", "tiff", "bmp", "gif", "xml", "json", "md", "odt", "rtf", "mobi", "tex", "xps", "zip",
         "mp3", "mp4", "wav", "dwg", "psd", "one", "ods")


def _file_ext(spec: _Spec, ctx: _Ctx) -> str:
    """The file type the API works on ('GetEpubInStorageToPdf' -> 'epub'), '' when none is named."""
    for text in (spec.desc, ctx.shared.get("api_name", ""), ctx.text):
        hits = [(m.start(), m.group(1)) for m in re.finditer(rf"\b({'|'.join(_EXTS)})\b", text)]
        if hits:
            return min(hits)[1]
    if re.search(r"\b(image|photo|picture)", str(ctx.shared.get("api_name", "")) + " " + spec.desc):
        return "png"
    return ""


def _neutral(spec: _Spec, ctx: _Ctx, rng: random.Random) -> Any:
    """A value for a parameter nothing else fits: typed, derived from its name, never a value of another kind."""
    if spec.ptype == "NUMBER":
        return rng.choice([1, 2, 3, 5, 10])
    if spec.ptype == "BOOLEAN":
        return rng.random() < 0.5
    words = [w for w in spec.tokens if w not in ("get", "the", "api")] or ["item"]
    return "my-" + "-".join(words) if len(words) <= 3 else "-".join(words[-3:])


def _neutral_type(spec: _Spec) -> str:
    return spec.ptype if spec.ptype in ("NUMBER", "BOOLEAN") else "STRING"


def _shape(v: Any) -> str:
    """A coarse shape of a value, to keep generated values like the documented ones (an id stays numeric...)."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "num"
    s = str(v)
    if re.fullmatch(r"[+-]?\d+(\.\d+)?", s):
        return "num"
    if "@" in s:
        return "email"
    if re.match(r"https?://|www\.", s):
        return "url"
    if re.fullmatch(r"\d{4}-\d{2}(-\d{2})?.*|\d{1,2}[/.-]\d{1,2}[/.-]\d{2,4}|\d{8}", s):
        return "date"
    if s.startswith("/"):
        return "path"
    if re.fullmatch(r"[^,\s]+(,\s*[^,\s]+)+", s):
        return "list"
    if re.fullmatch(r"[A-Z0-9]{1,6}|[a-z]{2,3}([-_][A-Za-z]{2,4})?", s):
        return "code"
    if re.fullmatch(r"[A-Za-z][A-Za-z'&.]*( [A-Za-z0-9'&.,-]+)*", s) and "." not in s.split()[-1][:-1]:
        return "text"
    if re.fullmatch(r"[\w-]+(\.[\w-]+)+", s):
        return "dotted"
    return "token"


def _like(value: Any, rng: random.Random) -> Any:
    """A new id shaped like a documented one: each digit/letter replaced by a random one of its class."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        n = len(str(abs(value)))
        return rng.randint(10 ** (n - 1) if n > 1 else 1, 10 ** n - 1)
    if not isinstance(value, str):
        return value
    out = []
    hexa = re.fullmatch(r"[0-9a-f-]+", value) is not None
    for ch in value:
        if hexa and ch.isalnum():
            out.append(rng.choice("0123456789abcdef"))
        elif ch.isdigit():
            out.append(rng.choice("0123456789"))
        elif "a" <= ch <= "z":
            out.append(rng.choice("abcdefghijklmnopqrstuvwxyz"))
        elif "A" <= ch <= "Z":
            out.append(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
        else:
            out.append(ch)
    return "".join(out)


_NEVER_OPTIONAL = {"secret"}  # auth tokens, callbacks, cursors...: a user never states them
DOC_SHARE = 0.7  # how often a documented value is used when there is one (official ground truths: about 60%)
OPTIONAL_SHARE = 0.3  # how often a fillable optional parameter is stated


def _api_text(api: Api | None) -> str:
    return f"{api.description} {humanize(api.name)}".lower() if api is not None else ""


def _context_kind(spec: _Spec, api_text: str) -> str:
    """The kind of a bare ``from``/``to``/``source``/``target`` parameter from what its API does."""
    kind = _kind(spec)
    if kind or not _direction(spec) or len(spec.tokens) != 1:
        return kind
    for k, pat in (("currency", r"currenc|exchange rate|convert"), ("airport", r"flight|airport"),
                   ("language", r"translat|language"), ("date", r"\bdates?\b|period|range|history|historical")):
        if re.search(pat, api_text):
            return k
    return ""


def _choose(param: dict[str, Any], ctx: _Ctx, rng: random.Random, required: bool) -> tuple[bool, Any]:
    """(filled?, value) for one parameter: documented values first, then listed options, then a generator."""
    spec = _spec(param)
    doc, opts = _doc_values(spec), _options(spec)
    kind = _context_kind(spec, str(ctx.shared.get("api_text", ctx.text)))
    if not required:
        if kind in _NEVER_OPTIONAL or not (doc or opts or kind):
            return False, None
        if rng.random() >= OPTIONAL_SHARE:
            return False, None
    group = {"lat": "coords", "lon": "coords", "geopoint": "coords"}.get(kind, spec.name)
    if _direction(spec) and kind in ("date", "currency", "airport", "language", "year", "money", "count"):
        group = f"pair:{kind}"  # both ends of a range documented, or both generated (an end after its start)
    draw = ctx.shared.setdefault(f"draw:{group}", rng.random())  # lat and lon both documented, or both generated
    if doc and draw < DOC_SHARE:
        return True, rng.choice(doc)
    if opts:
        return True, rng.choice(opts)
    if kind:
        if doc and kind == "id" and any(ch.isdigit() for ch in str(doc[0])):
            v = _coerce(_like(rng.choice(doc), rng), spec.ptype)
        else:
            v = _coerce(_generate(kind, spec, ctx, rng), spec.ptype)
        if v is not None and (not doc or _shape(v) == _shape(doc[0]) or kind in ("lat", "lon", "date", "year")):
            return True, v
    if doc:
        return True, rng.choice(doc)
    return True, _coerce(_neutral(spec, ctx, rng), _neutral_type(spec))


def _pool_for(param: dict[str, Any]) -> tuple[str, list[Any]]:
    """(a provider-neutral label, candidate values in order of preference) for a parameter: documented values,
    listed options, then a few generated ones (all of the parameter's type)."""
    spec = _spec(param)
    kind = _kind(spec)
    values: list[Any] = []
    for v in _doc_values(spec) + _options(spec):
        if v not in values:
            values.append(v)
    rng = random.Random(f"values:{spec.name}:{spec.ptype}:{spec.desc}")
    for _ in range(4 if kind else 0):
        v = _coerce(_generate(kind, spec, _Ctx(), rng), spec.ptype)
        if v is not None and v not in values:
            values.append(v)
    if not values:
        values.append(_coerce(_neutral(spec, _Ctx(), rng), _neutral_type(spec)))
    return _label(spec, kind), values


def _values_for(param: dict[str, Any]) -> list[Any]:
    return _pool_for(param)[1]


_LABELS = {"username": "user name", "email": "email address", "lat": "latitude", "lon": "longitude",
           "geopoint": "coordinates", "url": "URL", "ip": "IP address", "phone": "phone number", "storage": "storage",
           "currency": "currency", "coin": "coin", "symbol": "symbol", "airport": "airport", "flight": "flight",
           "language": "language", "country": "country", "city": "city", "address": "address", "zip": "postal code",
           "timezone": "time zone", "date": "date", "barcode": "barcode", "airline": "airline", "interval": "interval",
           "year": "year", "month": "month", "page": "page",
           "limit": "number of results", "offset": "offset", "path": "path", "filename": "file name",
           "folder": "folder", "text": "text", "subject": "subject", "search": "search term", "sort": "sort field",
           "order": "sort order", "format": "format", "units": "units", "password": "password", "domain": "domain"}


def _label(spec: _Spec, kind: str) -> str:
    if kind in _LABELS:
        return _LABELS[kind]
    words = " ".join(t for t in spec.tokens if t not in ("get", "api"))
    if kind == "id":
        return f"{_entity(spec)} ID".strip()
    return words if len(spec.joined) > 2 and words else "option"


def param_label(param: dict[str, Any]) -> str:
    """How an instruction names a parameter without using the provider's parameter name."""
    spec = _spec(param)
    return _label(spec, _kind(spec))
