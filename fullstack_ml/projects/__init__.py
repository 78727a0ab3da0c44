"The projects bundled with the package, one module each (`PROJECT`, its pictures and their truth): see `fullstack_ml.project`."

DEMO = "digits"  # the bundled project the demo gallery, the crawl's default and the default profile use
