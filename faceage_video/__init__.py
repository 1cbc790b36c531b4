"""faceage-video: age or de-age the faces in a video."""
