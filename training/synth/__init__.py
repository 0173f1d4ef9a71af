"""The seeded synthetic data generators (``data-scenes``, ``data-faces``): scenes of
Fashion-MNIST items on real photos (``scenes``, ``scenes_compose``) and synthetic face identities
(``face_synth``, ``face_synth_draw``)."""
