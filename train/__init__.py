"""Training: distillation of the student from a teacher."""
