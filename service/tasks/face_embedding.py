"""Face embedding: an aligned face crop -> an L2-normalised vector.

Within the face pipeline (service/faces/pipeline.py) each detected face is aligned onto the
package's landmark `template` (or its box is squared and resized when the detector gives no
landmarks) and the crops of one image go to the model as one batch. On its own
(`detect_faces=false`), the whole input is taken as one face crop.
"""

from __future__ import annotations

import numpy as np

from service.ops.align import crop_box, warp_face
from service.ops.letterbox import InputTransform
from service.pipeline.imaging import DecodedImage
from service.pipeline.package import FaceEmbeddingPost
from service.pipeline.preprocess import Frame
from service.tasks.base import TaskModel, TaskParams
from service.tasks.results import Faces


class EmbedParams(TaskParams):
    """The embedder on its own takes no parameters (the face pipeline's are the detector's)."""


def whole_image_face(image: DecodedImage) -> Faces:
    """One face covering the whole (source) image: a client-side face crop."""
    box = np.array([[0, 0, image.width, image.height]], np.float32)
    return Faces(box, np.ones(1, np.float32))


def normalise(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (the graph already does this; a zero row stays zero)."""
    vectors = np.asarray(embeddings, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


class FaceEmbeddingModel(TaskModel[EmbedParams, Faces, FaceEmbeddingPost]):
    task, endpoint = "face_embedding", "faces/embed"
    params_type, config_type = EmbedParams, FaceEmbeddingPost

    @property
    def threshold(self) -> float:
        return self.config.threshold

    def preprocess(self, image: DecodedImage) -> tuple[np.ndarray, InputTransform]:
        """The whole image as one face: squared around its centre (widened by `box_margin`)
        and resized, exactly as `crops` treats a face without landmarks."""
        (crop,) = self.crops(image, whole_image_face(image))
        h, w = image.pixels.shape[:2]
        side = max(w, h) * (1 + self.config.box_margin)
        scale = self.input_size[0] / side
        pad_x, pad_y = round((side - w) / 2 * scale), round((side - h) / 2 * scale)
        return crop, InputTransform(scale, scale, pad_x, pad_y)

    def crops(self, image: DecodedImage, faces: Faces) -> np.ndarray:
        """The model input of each face of `faces` (source pixels): uint8 [n, h, w, 3]."""
        sx, sy = image.scale
        to_decoded = np.array([1 / sx, 1 / sy], np.float32)
        template = np.asarray(self.config.template, np.float32)
        out = np.zeros((len(faces), self.input_size[1], self.input_size[0], 3), np.uint8)
        for i in range(len(faces)):
            if faces.landmarks is not None:
                points = faces.landmarks[i] * to_decoded
                out[i] = warp_face(image.pixels, points, template, self.input_size)
            else:
                box = faces.boxes[i] * np.tile(to_decoded, 2)
                out[i] = crop_box(image.pixels, box, self.input_size, self.config.box_margin)
        return out

    def postprocess(self, output: np.ndarray, frame: Frame, params: EmbedParams) -> Faces:
        embedding = normalise(np.asarray(output, np.float32).reshape(1, -1))
        if embedding.shape[1] != self.config.dim:
            raise ValueError(
                f"model output has {embedding.shape[1]} values, dim is {self.config.dim}"
            )
        return whole_image_face(frame.image).with_embeddings(embedding)
