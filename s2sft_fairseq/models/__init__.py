from . import unilm_seq2seq  # noqa: F401
from . import bert2bert  # noqa: F401
