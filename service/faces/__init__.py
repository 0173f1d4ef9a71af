"""Face recognition: the detect -> align -> embed pipeline, the gallery and the HTTP routes."""
