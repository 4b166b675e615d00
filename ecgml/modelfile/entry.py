"""MLflow "models from code" entry of a logged ecgml model (see :mod:`ecgml.modelfile`).

MLflow copies this file into every logged ecgml model and runs it when the model is loaded as a
pyfunc (``mlflow models serve``, ``mlflow.pyfunc.load_model``): it only names the python model,
which lives in the installed ``ecgml`` package. ``ecgml.predict`` does not use it.
"""

from mlflow.models import set_model

from ecgml.modelfile.serving import EcgmlBeatModel

set_model(EcgmlBeatModel())
