"""Camera geometry in torch: SE(3), quaternions, intrinsics, VGGT pose encoding, trajectories.

Convention: extrinsics are world-to-camera with OpenCV camera axes (``w2c_opencv``); anything else
says so in its name. Quaternions name their order (``quat_xyzw`` scalar-last, ``quat_wxyz``
scalar-first). Functions are batched over leading dims, keep float64 and never loop over frames.
This package imports only torch and numpy.
"""

from posevlm.geometry.cameras import Cameras, validate_w2c
from posevlm.geometry.intrinsics import (
    K_from_params,
    fov_from_intrinsics,
    intrinsics_crop,
    intrinsics_denormalize,
    intrinsics_from_fov,
    intrinsics_normalize,
    intrinsics_resize,
    intrinsics_rotate90,
)
from posevlm.geometry.pose_encoding import (
    POSE_ENCODING_TYPE,
    extrinsics_intrinsics_to_pose_encoding,
    pose_encoding_to_extrinsics_intrinsics,
)
from posevlm.geometry.quaternion import (
    matrix_to_quat_wxyz,
    matrix_to_quat_xyzw,
    quat_wxyz_to_matrix,
    quat_wxyz_to_xyzw,
    quat_xyzw_multiply,
    quat_xyzw_slerp,
    quat_xyzw_standardize,
    quat_xyzw_to_matrix,
    quat_xyzw_to_wxyz,
)
from posevlm.geometry.rotation import (
    axis_angle_to_matrix,
    geodesic_angle,
    matrix_to_axis_angle,
    pairwise_geodesic_angle,
    project_to_so3,
    rotation_angle,
    rotation_rigidity_error,
)
from posevlm.geometry.se3 import (
    OPENGL_FROM_OPENCV,
    c2w_opencv_to_c2w_opengl,
    c2w_opengl_to_c2w_opencv,
    c2w_to_w2c,
    camera_centers,
    se3_compose,
    se3_from_Rt,
    se3_inverse,
    transform_points,
    w2c_opencv_from_c2w_opengl,
    w2c_to_c2w,
)
from posevlm.geometry.trajectory import (
    lie_scalar_pose_index,
    merge_temporal_pairs,
    normalize_translation_scale,
    pairwise_pose_distances,
    pose_distance_matrix,
    reference_index,
    rereference,
)

__all__ = [
    "Cameras", "validate_w2c",
    "K_from_params", "fov_from_intrinsics", "intrinsics_crop", "intrinsics_denormalize", "intrinsics_from_fov",
    "intrinsics_normalize", "intrinsics_resize", "intrinsics_rotate90",
    "POSE_ENCODING_TYPE", "extrinsics_intrinsics_to_pose_encoding", "pose_encoding_to_extrinsics_intrinsics",
    "matrix_to_quat_wxyz", "matrix_to_quat_xyzw", "quat_wxyz_to_matrix", "quat_wxyz_to_xyzw",
    "quat_xyzw_multiply", "quat_xyzw_slerp", "quat_xyzw_standardize", "quat_xyzw_to_matrix", "quat_xyzw_to_wxyz",
    "axis_angle_to_matrix", "geodesic_angle", "matrix_to_axis_angle", "pairwise_geodesic_angle", "project_to_so3",
    "rotation_angle", "rotation_rigidity_error",
    "OPENGL_FROM_OPENCV", "c2w_opencv_to_c2w_opengl", "c2w_opengl_to_c2w_opencv", "c2w_to_w2c", "camera_centers",
    "se3_compose", "se3_from_Rt", "se3_inverse", "transform_points", "w2c_opencv_from_c2w_opengl", "w2c_to_c2w",
    "lie_scalar_pose_index", "merge_temporal_pairs", "normalize_translation_scale", "pairwise_pose_distances",
    "pose_distance_matrix", "reference_index", "rereference",
]  # fmt: skip
