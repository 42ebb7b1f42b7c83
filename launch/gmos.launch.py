"""Launch gmos_node: `ros2 launch gmos_ros gmos.launch.py image:=/cam/image_raw`.

Arguments:
  namespace     namespace of the node (outputs under /<namespace>/gmos/...)
  params_file   node parameters (default: the package's config/gmos.yaml)
  image         input image topic (remaps the node's `image`)
  camera_info   input CameraInfo topic (remaps `camera_info`; re-published on ~/camera_info)
  use_sim_time  true when replaying a bag with /clock (`gmos-bag play --clock`)

DDS stays on this machine only if the environment says so: export
ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and, for large images, FASTDDS_DEFAULT_PROFILES_FILE
pointing at the package's config/fastdds_loopback.xml (see docs/ros.md).
"""

from launch.actions import DeclareLaunchArgument
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
    node = Node(
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
            },
        ],
        remappings=[
            ("image", LaunchConfiguration("image")),
            ("camera_info", LaunchConfiguration("camera_info")),
        ],
    )
    return LaunchDescription([*args, node])
