"""Packaging for paddlemix_iqa (metadata lives here; pyproject.toml only names the backend)."""

from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent
version = {}
exec((HERE / "paddlemix_iqa" / "_version.py").read_text(), version)

PADDLE = ["paddlepaddle>=3.0"]  # GPU users install paddlepaddle-gpu themselves instead
CONVERT = ["torch>=2.1", "x2paddle>=1.6.0", "six>=1.16", "requests>=2.25"]  # x2paddle imports six and requests
TRAIN = ["scikit-learn>=1.3"]
RAY = ["ray[data]>=2.40"]  # run --engine ray (integrations/ray.py)
HF = ["datasets>=2.18"]  # integrations/hf.py: Hugging Face datasets map/filter
DEDUP = ["faiss-cpu>=1.8"]  # dedup embeddings: exact cosine range search (a numpy fallback gives the same pairs)
SERVE = ["starlette>=0.36", "uvicorn>=0.29", "python-multipart>=0.0.9", "prometheus-client>=0.20", "httpx>=0.27"]

setup(
    name="paddlemix-iqa",
    version=version["__version__"],
    description="Paddle-native image-quality filters (ARNIQA, BRISQUE, PULC, sharpness, codes) for PaddleMIX DataCopilot",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["paddlemix_iqa", "paddlemix_iqa.*"]),
    package_data={
        "paddlemix_iqa": ["data/*", "data/fused/*.json", "configs/*.yaml"],
        "paddlemix_iqa.pipeline.report": ["templates/*.j2"],  # the report's Jinja2 template
    },
    include_package_data=True,
    install_requires=[
        "numpy>=1.24",
        "pillow>=10.0",
        "opencv-python-headless>=4.8",
        "pyyaml>=6.0",
        "pydantic>=2.5",
        "tqdm>=4.60",
        "zxing-cpp>=2.2",
        "matplotlib>=3.7",
        "scikit-image>=0.21",
        "ijson>=3.2",
        "scipy>=1.10",  # scorers/brisque.py (scipy.special.gamma for the GGD/AGGD fits)
        "jinja2>=3.1",  # pipeline/report (the HTML template)
        "imagehash>=4.3",  # dedup: the 64-bit pHash signatures (scorers/phash.py)
    ],
    extras_require={
        "paddle": PADDLE,
        "convert": PADDLE + CONVERT,
        "train": TRAIN,
        "serve": SERVE,  # paddlemix-iqa serve (FastAPI on uvicorn) and its client
        "ray": PADDLE + RAY,
        "hf": HF,
        "dedup": DEDUP,
        "test": PADDLE + TRAIN + SERVE + RAY + HF + DEDUP + ["pytest>=7.4", "ruff>=0.5", "playwright>=1.40"],  # playwright: report browser test
    },
    entry_points={"console_scripts": ["paddlemix-iqa=paddlemix_iqa.cli:main"]},
    classifiers=[
        "Programming Language :: Python :: 3",
        "License :: OSI Approved :: Apache Software License",
        "Topic :: Scientific/Engineering :: Image Processing",
    ],
)
