"""Install: python3 -m venv .venv && .venv/bin/pip install -e ".[dev]"."""
from setuptools import find_packages, setup

setup(
    name="scaling",
    version="0.1.0",
    description="Compute-optimal scaling studies of language models in JAX",
    python_requires=">=3.10",
    packages=find_packages(include=["scaling*", "models*", "experiments*", "analysis*", "plumbing*"]),
    install_requires=[
        "jax==0.10.2",
        "jaxlib==0.10.2",
        "flax==0.12.8",
        "optax==0.2.8",
        "orbax-checkpoint==0.12.8",
        # tensorflow-datasets imports importlib_resources without declaring it.
        "tensorflow-datasets==4.9.10",
        "importlib_resources==7.1.0",
        "array_record==0.8.6",
        "grain==0.2.18",
        "ml-collections==1.1.0",
        # Event files for TensorBoard without TensorFlow.
        "tensorboardX==2.6.5",
        "numpy==2.4.6",
        # jax needs ml_dtypes >= 0.5; 0.7.0 takes ~1.3 CPU s to import beside numpy 2.4.6 (registering
        # its ufunc loops), 0.6.0 ~0.05 s: a second of every CLI's start (analysis.fit --law: 10-20%).
        "ml-dtypes==0.6.0",
        "scipy==1.17.1",
        "pandas==3.1.1",
        "matplotlib==3.11.2",
        "submitit==1.5.4",
    ],
    extras_require={"dev": ["pytest==9.2.0", "pytest-xdist==3.8.0"]},
)
