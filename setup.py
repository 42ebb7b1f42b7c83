"""gmos_ros: the ROS 2 package at the repo root (ament_python).

`pip install -e .` also works with no ROS at all: it installs the framework-free
`gmos_core`, the offline `training` tools and the thin `gmos_ros` layer. rclpy and the
message packages are *not* pip requirements: on a robot they come from the ROS
distribution (declared in package.xml); `make setup` provides them from PyPI wheels only
where no ROS is installed.
"""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "gmos_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Gmos: grounding moving object segmentation in 3D space and time, for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(
        include=["gmos_core", "gmos_core.*", "gmos_ros", "gmos_ros.*", "training", "training.*"]
    ),
    package_data={"training": ["configs/*.yaml"], "gmos_core": ["assets/*", "configs/*.yaml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
    ],
    install_requires=[
        # torch is installed first by `make setup` (TORCH_SPEC) so this range never pulls a
        # multi-GB CUDA build by accident on a machine that already has one.
        "torch>=2.1",
        "numpy>=1.24",
        "scipy>=1.10",
        "opencv-python-headless>=4.8",
        "pillow>=10",
        "safetensors>=0.4",
        "tqdm>=4.60",
        "matplotlib>=3.7",
        "omegaconf>=2.3",
        "hydra-core>=1.3",
        "pyyaml>=6",
        "rosbags>=0.10",
    ],
    extras_require={
        "dev": ["pytest>=7", "pytest-timeout>=2", "ruff>=0.6"],
        "onnx": ["onnx>=1.16", "onnxruntime>=1.18"],
        "tensorrt": ["tensorrt>=10.3,<11.5"],  # the lines test_tensorrt_api.py checks
    },
    tests_require=["pytest"],
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "gmos-eval = training.evaluate.cli:main",
            "gmos-infer = training.infer:main",
            "gmos-baseline = training.baseline:main",
            "gmos-synth = gmos_core.data.synthetic:main",
            "gmos_node = gmos_ros.node:main",
            "gmos-bag = gmos_ros.bag.cli:main",
            "gmos-export = training.export.onnx_export:main",
            "gmos-build-engines = training.export.engines:main",
            "gmos-bench = training.bench.cli:main",
            "gmos-calibrate = training.calibrate:main",
            "gmos-gpu-check = training.gpu_check:main",
            "gmos-train = training.train:main",
            "gmos-pretrain-pi3 = training.pretrain_pi3:main",
        ],
    },
)
