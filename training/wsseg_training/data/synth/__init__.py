"""Sensor-realistic synthetic scenes: labelled meshes ray cast by a simulated RGB-D camera or spinning LiDAR."""
