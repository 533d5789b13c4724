"""How a student starts (``distill.init``): the torch-free config and its shape checks
(:mod:`~amad.student_init.config`), inheritance of the teacher's weights
(:mod:`~amad.student_init.inherit`) and the head statistics that choose what is inherited
(:mod:`~amad.student_init.head_importance`)."""
