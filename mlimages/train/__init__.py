"""Training: the engine (tf.distribute, Horovod), the pretraining and fine-tuning stages
(notebooks 04, 05), opening checkpoints, the cost plan."""
