"""The one catalogue of model weights: files, official sources, checksums, licences, how each is made.

The locator (:mod:`.weights`), ``paddlemix-iqa weights list|download`` and the
missing-weights messages all read this, so a model's facts live in one place.

A ``sha256`` is pinned only for bytes someone has actually hashed; ``None`` means
not pinned yet (the download then logs and prints the hash of what it got, so it
can be pinned here). Sizes follow the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .arniqa_protocol import DATASETS, ENCODER_FILE, META_FILE, regressor_file
from .inference import PARAMS_FILE, PROGRAM_FILES

#: what a needed file may be: one name, or a tuple of names any one of which will do
Need = str | tuple[str, ...]


@dataclass(frozen=True)
class Source:
    """One official file, as its publisher serves it."""

    file: str
    url: str
    sha256: str | None = None  # pinned when the bytes are known, else None
    size: int | None = None  # bytes, when known
    variant: str | None = None  # the variant it belongs to (an ARNIQA regressor's dataset), None: all


@dataclass(frozen=True)
class Model:
    """A model the package can load: what must be in ``<weights home>/<name>/`` and how it gets there."""

    name: str  # scorer name and folder name under the weights home
    title: str
    homepage: str
    licence: str
    licence_url: str
    commercial_use: bool
    make: str  # "download": `paddlemix-iqa weights download NAME`; "convert": ``convert`` makes them
    sources: tuple[Source, ...]
    files: tuple[Need, ...]  # needed whatever the variant
    variant_file: str | None = None  # "{}"-pattern of the one extra file a variant needs
    variants: tuple[str, ...] = ()
    default_variant: str | None = None
    convert: str = ""  # the conversion command; {src}: folder of the sources, {variant}, {out}
    notes: tuple[str, ...] = field(default_factory=tuple)

    def required(self, variant: str | None = None) -> list[Need]:
        """The files the scorer needs for ``variant`` (the default one when None)."""
        variant = variant or self.default_variant
        extra = [self.variant_file.format(variant)] if self.variant_file and variant else []
        return [*self.files, *extra]

    def sources_for(self, variant: str | None = None) -> list[Source]:
        variant = variant or self.default_variant
        return [s for s in self.sources if s.variant in (None, variant)]

    def convert_command(self, variant: str | None = None, out: str | None = None) -> str:
        """The command that makes the files from the sources (for ``make == "convert"``)."""
        return self.convert.format(
            src=f"./{self.name}_torch",
            variant=variant or self.default_variant,
            out=out or f"$PADDLEMIX_IQA_HOME/{self.name}",
        )

    def how_to(self, variant: str | None = None, out: str | None = None) -> str:
        """The exact steps that put the files in ``out`` (default ``$PADDLEMIX_IQA_HOME/<name>``)."""
        wanted = self.sources_for(variant)
        if self.make == "download":
            return (
                f"run `paddlemix-iqa weights download {self.name}` (fetches {wanted[0].url}), "
                "or unpack that tarball yourself and pass its folder (model_dir=...)."
            )
        terms = f"licence {self.licence}" + ("" if self.commercial_use else ", non-commercial use only")
        return (
            f"download {' and '.join(s.file for s in wanted)} from {self.homepage} ({terms}; "
            f"{', '.join(s.url for s in wanted)}) into ./{self.name}_torch/, then run: "
            f"{self.convert_command(variant, out)}"
        )


_PULC = "https://paddleclas.bj.bcebos.com/models/PULC/inference/"
_PULC_HOME = "https://github.com/PaddlePaddle/PaddleClas"
_APACHE = "https://www.apache.org/licenses/LICENSE-2.0"
_ARNIQA_RELEASE = "https://github.com/miccunifi/ARNIQA/releases/tag/weights"
_ARNIQA_FILES = "https://github.com/miccunifi/ARNIQA/releases/download/weights/"


def _pulc(name: str, archive: str, title: str) -> Model:
    return Model(
        name=name,
        title=title,
        homepage=_PULC_HOME,
        licence="Apache-2.0",
        licence_url=_APACHE,
        commercial_use=True,
        make="download",
        sources=(Source(archive, _PULC + archive),),  # sha256 not pinned: no hashed copy of the tarball yet
        files=(PROGRAM_FILES, PARAMS_FILE),
    )


MODELS: dict[str, Model] = {
    m.name: m
    for m in (
        _pulc(
            "pulc_clarity", "clarity_assessment_infer.tar", "PaddleClas PULC clarity_assessment (p(blurred))"
        ),
        _pulc("pulc_code", "code_exists_infer.tar", "PaddleClas PULC code_exists (p(contains a code))"),
        Model(
            name="arniqa",
            title="ARNIQA (WACV 2024) ResNet-50 encoder + ridge regressors, converted to Paddle",
            homepage=_ARNIQA_RELEASE,
            licence="CC BY-NC 4.0",
            licence_url="https://creativecommons.org/licenses/by-nc/4.0/",
            commercial_use=False,
            make="convert",
            # sha256 not pinned: no hashed copy of the release files yet (arniqa.json records what was converted)
            sources=(
                Source("ARNIQA.pth", _ARNIQA_FILES + "ARNIQA.pth"),
                *(
                    Source(f"regressor_{d}.pth", f"{_ARNIQA_FILES}regressor_{d}.pth", variant=d)
                    for d in DATASETS
                ),
            ),
            files=(ENCODER_FILE, META_FILE),
            variant_file=regressor_file("{}"),
            variants=tuple(DATASETS),
            default_variant="kadid10k",
            convert=(
                'pip install -e ".[convert]" && python tools/convert_arniqa.py --encoder {src}/ARNIQA.pth '
                "--regressor {src}/regressor_{variant}.pth --out {out}"
            ),
            notes=(
                "not bundled with this Apache-2.0 package: each user fetches and converts their own copy",
            ),
        ),
    )
}


def get_model(name: str) -> Model:
    """The catalogue entry of ``name``; KeyError naming the known models otherwise."""
    try:
        return MODELS[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None
