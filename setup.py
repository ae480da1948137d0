"""ament_python setup of the robot-side package `wsseg` (the repository root)."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "wsseg"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="wsseg robot side: shared preprocessing, ONNX Runtime segmenter, ROS 2 nodes",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.json") + glob("config/*.xml")),
    ],
    install_requires=["setuptools", "numpy", "PyYAML", "onnxruntime"],
    # fast: compiled voxelization / kernel maps (numpy fallback without it); gpu: CuPy preprocessing
    extras_require={"fast": ["numba>=0.60"], "gpu": ["cupy-cuda12x>=13"]},
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "wsseg = wsseg.cli:main",
            "segment_node = wsseg.ros.segment_node:main",
            "replay_node = wsseg.ros.replay_node:main",
        ],
        "wsseg.commands": [
            "infer = wsseg.runtime.cli:register",
            "segment-bag = wsseg.ros.bag_cli:register",
        ],
    },
)
