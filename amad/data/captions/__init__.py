"""Images with captions, shared by the tasks that read them (retrieval, captioning): the data
section (:mod:`.config`), the file formats (:mod:`.sources`), the built-in scenes' captions
(:mod:`.scenes`) and the records of every split, checked and imported (:mod:`.records`)."""
