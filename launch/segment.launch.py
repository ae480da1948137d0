"""Launch the wsseg segment_node: ``ros2 launch wsseg segment.launch.py model:=/path/to/bundle``.

Arguments: ``model`` (bundle directory, required), ``config`` (parameter YAML; default the package's
config/segment.yaml), ``input_mode`` (points | rgbd; wins over the YAML's value), ``namespace``, ``use_sim_time``,
the input topic remaps ``points_topic``, ``depth_topic``, ``color_topic``, ``camera_info_topic``,
``fastdds_profile`` (optional Fast DDS XML, e.g. the package's config/fastdds_large_messages.xml, for
multi-megabyte best-effort clouds and payloads freed after use) and ``fastdds_qos_from_xml`` (true: with a
profile, ``RMW_FASTRTPS_USE_QOS_FROM_XML=1``, so its history memory policy applies; a profile of your own then
needs one, or pass false).
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, SetEnvironmentVariable
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory("wsseg")
    arguments = [
        DeclareLaunchArgument("model", description="model bundle directory written by `wsseg export`"),
        DeclareLaunchArgument("config", default_value=os.path.join(share, "config", "segment.yaml"),
                              description="node parameter file (ros__parameters YAML)"),
        DeclareLaunchArgument("input_mode", default_value="points", choices=["points", "rgbd"],
                              description="points: ~/input/points; rgbd: ~/input/depth + color + camera_info"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node"),
        DeclareLaunchArgument("use_sim_time", default_value="false", choices=["true", "false"]),
        DeclareLaunchArgument("points_topic", default_value="points", description="input PointCloud2 topic"),
        DeclareLaunchArgument("depth_topic", default_value="camera/depth/image_raw"),
        DeclareLaunchArgument("color_topic", default_value="camera/color/image_raw"),
        DeclareLaunchArgument("camera_info_topic", default_value="camera/depth/camera_info"),
        DeclareLaunchArgument("fastdds_profile", default_value="",
                              description="Fast DDS XML profile for the node process (empty: middleware default)"),
        DeclareLaunchArgument("fastdds_qos_from_xml", default_value="true", choices=["true", "false"],
                              description="with fastdds_profile: take the history memory policy from it"),
    ]
    profile = LaunchConfiguration("fastdds_profile")
    node = Node(
        package="wsseg",
        executable="segment_node",
        name="segment_node",
        namespace=LaunchConfiguration("namespace"),
        output="screen",
        emulate_tty=True,
        parameters=[
            LaunchConfiguration("config"),
            {
                "model": LaunchConfiguration("model"),
                "input_mode": LaunchConfiguration("input_mode"),
                "use_sim_time": ParameterValue(LaunchConfiguration("use_sim_time"), value_type=bool),
            },
        ],
        remappings=[
            ("~/input/points", LaunchConfiguration("points_topic")),
            ("~/input/depth", LaunchConfiguration("depth_topic")),
            ("~/input/color", LaunchConfiguration("color_topic")),
            ("~/input/camera_info", LaunchConfiguration("camera_info_topic")),
        ],
    )
    return LaunchDescription([
        *arguments,
        SetEnvironmentVariable("FASTDDS_DEFAULT_PROFILES_FILE", profile,
                               condition=IfCondition(PythonExpression(["'", profile, "' != ''"]))),
        SetEnvironmentVariable("RMW_FASTRTPS_USE_QOS_FROM_XML", "1", condition=IfCondition(PythonExpression(
            ["'", profile, "' != '' and '", LaunchConfiguration("fastdds_qos_from_xml"), "' == 'true'"]))),
        node,
    ])
