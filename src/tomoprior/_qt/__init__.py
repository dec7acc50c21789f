"""Qt dock widgets of the napari plugin and their run controller.

The only part of tomoprior that imports Qt (through qtpy), superqt and
magicgui. One widget per module:

``reconstruction``  the Reconstruction dock widget
``comparison``      the Compare methods dock widget
``alignment``       the Alignment dock widget (shifts, tilt axis, hand check of the axis)
``ortho_views``     x-z / y-z planes of the active volume and their log power spectra
``tilt_overlay``    the tilt angle of the image in view, on the canvas
``shift_plot``      the tiny QPainter plot of the shifts per tilt
``tilt_panel``      tilt-series layer, angles, tilt selection, axis, binning, slab (shared)
``method_panel``    method selector and parameter pages, built from ``METHODS``
``param_widgets``   one magicgui widget per ``Param``
``device_picker``   device combo with its description
``controller``      RunController: at most one background worker, typed run state;
                    TaskRunner: the same for one function with progress messages
``closing``         a dock's work ends quietly with its window or its dock
``progress``        progress bar, times, residual and the live plot
``loss_plot``       the tiny QPainter plot of the residual per iteration (hover shows values)
``search_plot``     held-out error against λ during a λ search
``progress_bar``    a progress bar that schedules its repaints (QProgressBar repaints at once)
``live_layer``      the one result layer a run updates in place; shared contrast
``results``         names, scale, placement and provenance of result layers
``metrics_table``   the comparison's table of figures
``uncertainty``     half sets / ensemble options and the uncertainty layer of a run
``resolution_plot`` the half-set FSC curves and tilt-plane polar plot; the Resolution dock
``difference``      difference maps (method minus reference)
``profile_plot``    line profiles of the compared methods (one colour each)
``tilt_list``       the tilts with thumbnails, to untick bad frames
``fill_tilts``      "Fill in tilts": a denser series with virtual frames; which frames are
                    virtual in a layer
``messages``        one-line user messages and notifications
``common``          scroll-area host and the "stop and restart?" question
"""
