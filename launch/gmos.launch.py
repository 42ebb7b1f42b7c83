"""Launch gmos_node: `ros2 launch gmos_ros gmos.launch.py image:=/cam/image_raw`.

Arguments:
  namespace     namespace of the node (outputs under /<namespace>/gmos/...)
  params_file   node parameters (default: the package's config/gmos.yaml)
  image         input image topic (remaps the node's `image`)
  camera_info   input CameraInfo topic (remaps `camera_info`; re-published on ~/camera_info)
  use_sim_time  true when replaying a bag with /clock (`gmos-bag play --clock`)
  backend, onnx_dir, engine_dir, ort_provider, device, precision
                what runs the network (default: the params file's values; see
                config/gmos.yaml and docs/deployment.md)

DDS stays on this machine only if the environment says so: export
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and, for large images, FASTDDS_DEFAULT_PROFILES_FILE
pointing at the package's config/fastdds_loopback.xml (see docs/ros.md).
"""

from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

from launch import LaunchDescription


def generate_launch_description():
    """The node with its parameters file, remaps and sim-time switch."""
    args = [
        DeclareLaunchArgument("namespace", default_value="", description="node namespace"),
        DeclareLaunchArgument(
            "params_file",
            default_value=PathJoinSubstitution(
                [FindPackageShare("gmos_ros"), "config", "gmos.yaml"]
            ),
            description="gmos_node parameters YAML",
        ),
        DeclareLaunchArgument(
            "image", default_value="/camera/image_raw", description="input image topic"
        ),
        DeclareLaunchArgument(
            "camera_info", default_value="/camera/camera_info", description="input CameraInfo topic"
        ),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock"),
    ]
    args += [
        DeclareLaunchArgument(name, default_value="", description=desc)
        for name, desc in BACKEND_ARGS.items()
    ]
    return LaunchDescription([*args, OpaqueFunction(function=_gmos_node)])


# What runs the network; each overrides the params file only when given (an empty default
# passed on would overwrite the file's value), hence the OpaqueFunction.
BACKEND_ARGS = {
    "backend": "torch | onnxruntime | tensorrt",
    "onnx_dir": "gmos-export folder (onnxruntime, tensorrt)",
    "engine_dir": "engine cache built by gmos-build-engines (tensorrt)",
    "ort_provider": "onnxruntime execution provider: cpu | cuda | tensorrt",
    "device": "torch device / GPU of the engines",
    "precision": "fp32 | bf16 | fp16",
}


def _gmos_node(context, *args, **kwargs):
    """The node, its parameters file, the backend arguments that were given, remaps."""
    given = {name: LaunchConfiguration(name).perform(context) for name in BACKEND_ARGS}
    return [
        Node(
            package="gmos_ros",
            executable="gmos_node",
            name="gmos",
            namespace=LaunchConfiguration("namespace"),
            output="screen",
            parameters=[
                LaunchConfiguration("params_file"),
                {
                    "use_sim_time": ParameterValue(
                        LaunchConfiguration("use_sim_time"), value_type=bool
                    ),
                    # Relative names: the remappings below point them at the real topics.
                    "input_topics": ["image"],
                    "camera_info_topics": ["camera_info"],
                    **{k: v for k, v in given.items() if v},
                },
            ],
            remappings=[
                ("image", LaunchConfiguration("image")),
                ("camera_info", LaunchConfiguration("camera_info")),
            ],
        )
    ]
