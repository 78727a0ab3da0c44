"The projects bundled with the package, one module each (`PROJECT`, its pictures and their truth): see `fullstack_ml.project`."
